// An OPC-UA server nobody on this project wrote (node-opcua), for tests/peers/test_peer_opcua.py.
//
//   node opcua_server.mjs [--port N] [--cert cert.pem --key key.pem] [--pki DIR] [--tick-ms MS]
//
// Listens on 127.0.0.1 only; port 0 = any free port.  Prints "listening <port>" once ready.
// Security None always; Basic256Sha256 Sign and SignAndEncrypt too (with --cert/--key, PEM, whose
// URI SAN is APPLICATION_URI; without them node-opcua makes its own certificate in the PKI folder).
// Client certificates are accepted and filed as trusted.  Set XDG_CONFIG_HOME (or --pki) to a
// temporary folder, or node-opcua keeps its PKI under ~/.config.
//
// Address space (namespace 1):
//   ns=1;s=Station.Pressure  Double   changes every tick (sine, MPa)
//   ns=1;s=Station.Flow      Double   changes every tick (Nm3/h)
//   ns=1;s=Station.Counter   UInt32   +1 every tick
//   ns=1;s=Station.Running   Boolean  true
//   ns=1;s=Station.Name      String   "node-opcua peer"
//   ns=1;s=Station.Setpoint  Double   writable, 0.4

import process from "node:process";
import {
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  Variant,
} from "node-opcua";

export const APPLICATION_URI = "urn:gasiot:test:node-opcua";

function parseArgs(argv) {
  const args = { port: 0, cert: null, key: null, pki: null, tickMs: 100 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--port") args.port = Number(value);
    else if (flag === "--cert") args.cert = value;
    else if (flag === "--key") args.key = value;
    else if (flag === "--pki") args.pki = value;
    else if (flag === "--tick-ms") args.tickMs = Number(value);
    else throw new Error(`unknown argument ${flag}`);
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const options = {
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    port: args.port,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    serverInfo: {
      applicationUri: APPLICATION_URI,
      productUri: "urn:gasiot:test",
      applicationName: { text: "gasiot test peer (node-opcua)" },
    },
  };
  if (args.pki) {
    options.serverCertificateManager = new OPCUACertificateManager({
      rootFolder: args.pki,
      automaticallyAcceptUnknownCertificate: true,
    });
  }
  if (args.cert) {
    options.certificateFile = args.cert;
    options.privateKeyFile = args.key;
  }
  const server = new OPCUAServer(options);
  await server.initialize();

  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const station = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Station", nodeId: "s=Station" });
  const variable = (name, dataType, value, writable = false) =>
    ns.addVariable({
      componentOf: station,
      browseName: name,
      nodeId: `s=Station.${name}`,
      dataType,
      accessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      userAccessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      minimumSamplingInterval: 0, // exception-based: every change is reported
      value: new Variant({ dataType: DataType[dataType], value }),
    });
  const pressure = variable("Pressure", "Double", 0.4);
  const flow = variable("Flow", "Double", 1000.0);
  const counter = variable("Counter", "UInt32", 0);
  variable("Running", "Boolean", true);
  variable("Name", "String", "node-opcua peer");
  variable("Setpoint", "Double", 0.4, true);

  let tick = 0;
  const timer = setInterval(() => {
    tick += 1;
    const now = new Date();
    const set = (node, dataType, value) =>
      node.setValueFromSource(new Variant({ dataType, value }), StatusCodes.Good, now);
    set(pressure, DataType.Double, 0.4 + 0.01 * Math.sin(tick / 10));
    set(flow, DataType.Double, 1000 + 10 * tick);
    set(counter, DataType.UInt32, tick);
  }, args.tickMs);

  await server.start();
  process.stdout.write(`listening ${server.endpoints[0].port}\n`);

  const stop = async () => {
    clearInterval(timer);
    await server.shutdown(0);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  process.stderr.write(`opcua_server: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
