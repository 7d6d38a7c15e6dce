from gasiot.cli import main

main()
