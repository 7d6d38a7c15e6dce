"""The web console's files (``static/``), served by cloud.routes_console."""
