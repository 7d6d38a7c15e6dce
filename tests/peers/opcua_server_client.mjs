// An OPC-UA client nobody on this project wrote (node-opcua), for tests/peers/test_peer_opcua_server.py:
// it talks to the gateway's northbound OPC-UA server (Basic256Sha256 SignAndEncrypt, user logins).
//
//   node opcua_server_client.mjs --endpoint opc.tcp://127.0.0.1:PORT/PATH --pki DIR
//
// At start it makes its PKI in DIR (node-opcua's layout: own/, trusted/, rejected/) with a new
// self-signed client certificate, unknown peers NOT accepted automatically, and prints
//   reply {"ok":true,"certificate":"<own certificate, PEM>","applicationUri":"..."}
// Then it reads one JSON request per stdin line and answers each with one "reply <json>" line
// (other stdout lines are node-opcua's own warnings).  Requests ({"op": ..., ...}):
//
//   trust_server {der}                      put the server's certificate in trusted/
//   connect {name, user, password, namespace}  a new client + session; reply: ns (index of namespace)
//   browse_path {name, path: [browse names]}   Browse from Objects following the names; reply: children
//   browse {name, nodeId}                   children (hierarchical references) of one node
//   read {name, nodeId}                     value, status, sourceTimestamp
//   attributes {name, nodeId, attributes: [AttributeIds names]}  each value (or the Bad status name)
//   subscribe {name, nodeId}                a data-change monitored item; reply: item (a number)
//   wait_value {item, equals, tolerance, timeoutMs}  the first data change of item with that value
//   call {name, objectId, methodId, args: [{type, value}]}  reply: status, outputs
//   subscribe_events {name}                 an event monitored item on the Server object (i=2253)
//   condition_refresh {name}                ConditionRefresh for that subscription
//   wait_event {name, conditionId, activeState, ackedState, refresh, timeoutMs}  first matching event
//   acknowledge {name, conditionId, eventId (hex), comment}   reply: status
//   history_raw {name, nodeId, start, end, perRequest}  HistoryRead raw, following continuation points
//   quit
//
// NodeIds are node-opcua strings; "ns=station;" stands for the index of the namespace given to
// connect.  A failed request answers {"ok": false, "status": "<StatusCode name, if any>", "error": "..."}.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import readline from "node:readline";
import {
  AttributeIds,
  BrowseDirection,
  DataType,
  HistoryReadRequest,
  LocalizedText,
  MessageSecurityMode,
  NodeClass,
  NodeId,
  OPCUACertificateManager,
  OPCUAClient,
  QualifiedName,
  ReadRawModifiedDetails,
  SecurityPolicy,
  StatusCode,
  TimestampsToReturn,
  UserTokenType,
  Variant,
  acknowledgeCondition,
  callConditionRefresh,
  constructEventFilter,
  resolveNodeId,
} from "node-opcua";

const APPLICATION_NAME = "gasiot-peer-client";
const EVENT_FIELDS = [
  "EventId",
  "EventType",
  "SourceName",
  "Time",
  "Message",
  "Severity",
  "ConditionName",
  "ConditionId",
  "Retain",
  "ActiveState.Id",
  "AckedState.Id",
];
const OPS = new Set([
  "trust_server",
  "connect",
  "browse_path",
  "browse",
  "read",
  "attributes",
  "subscribe",
  "wait_value",
  "call",
  "subscribe_events",
  "condition_refresh",
  "wait_event",
  "acknowledge",
  "history_raw",
  "quit",
]);
const REFRESH_START = resolveNodeId("RefreshStartEventType").toString();
const REFRESH_END = resolveNodeId("RefreshEndEventType").toString();

function parseArgs(argv) {
  const args = { endpoint: null, pki: null };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--endpoint") args.endpoint = value;
    else if (flag === "--pki") args.pki = value;
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.endpoint || !args.pki) throw new Error("--endpoint and --pki are required");
  return args;
}

function reply(body) {
  process.stdout.write(`reply ${JSON.stringify(body)}\n`);
}

/** A JSON-friendly copy of what node-opcua decoded (LocalizedText, NodeId, Buffer, structures…). */
function plain(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return Number(value);
  if (Buffer.isBuffer(value)) return value.toString("hex");
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value) || ArrayBuffer.isView(value)) return Array.from(value, plain);
  if (value instanceof Variant) return plain(value.value);
  if (value instanceof NodeId) return value.toString();
  if (value instanceof QualifiedName) return value.toString();
  if (value instanceof LocalizedText) return { text: value.text, locale: value.locale };
  if (value instanceof StatusCode) return value.name;
  const out = {};
  for (const [key, field] of Object.entries(value)) {
    if (typeof field !== "function" && key !== "schema") out[key] = plain(field);
  }
  return out;
}

function statusName(err) {
  const fault = err?.response?.responseHeader?.serviceResult;
  if (fault) return fault.name;
  const match = /\b(Bad[A-Za-z]+)\b/.exec(String(err?.message ?? err));
  return match ? match[1] : null;
}

/** Resolves when ``test()`` holds, re-checked on every ``wake()``; rejects after ``timeoutMs``. */
class Waiters {
  constructor() {
    this.pending = new Set();
  }
  wait(test, timeoutMs, what) {
    const found = test();
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const entry = { test, resolve };
      entry.timer = setTimeout(() => {
        this.pending.delete(entry);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.pending.add(entry);
    });
  }
  wake() {
    for (const entry of [...this.pending]) {
      const found = entry.test();
      if (found !== undefined) {
        clearTimeout(entry.timer);
        this.pending.delete(entry);
        entry.resolve(found);
      }
    }
  }
}

class Peer {
  constructor(args) {
    this.args = args;
    this.sessions = new Map(); // name → {client, session, ns, subscription, events}
    this.items = []; // data-change monitored items: {values: [...]}
    this.waiters = new Waiters();
  }

  async init() {
    this.cm = new OPCUACertificateManager({
      rootFolder: this.args.pki,
      automaticallyAcceptUnknownCertificate: false, // the server's certificate must be trusted
    });
    await this.cm.initialize();
    this.applicationUri = `urn:${os.hostname()}:${APPLICATION_NAME}:${path.basename(this.args.pki)}`;
    this.certificateFile = path.join(this.cm.rootDir, "own", "certs", "client_certificate.pem");
    await this.cm.createSelfSignedCertificate({
      applicationUri: this.applicationUri,
      subject: `/CN=${APPLICATION_NAME}/O=gasiot peer tests`,
      dns: [os.hostname()],
      startDate: new Date(),
      validity: 30,
      outputFile: this.certificateFile,
    });
    return { certificate: this.certificateFile, applicationUri: this.applicationUri };
  }

  entry(name) {
    const entry = this.sessions.get(name);
    if (!entry) throw new Error(`no session ${name}`);
    return entry;
  }

  nodeId(entry, text) {
    return resolveNodeId(text.replace("ns=station;", `ns=${entry.ns};`));
  }

  async trust_server({ der }) {
    await this.cm.trustCertificate(fs.readFileSync(der));
    return {};
  }

  async connect({ name, user, password, namespace }) {
    const client = OPCUAClient.create({
      applicationName: APPLICATION_NAME,
      applicationUri: this.applicationUri,
      clientCertificateManager: this.cm,
      certificateFile: this.certificateFile,
      privateKeyFile: this.cm.privateKey,
      securityMode: MessageSecurityMode.SignAndEncrypt,
      securityPolicy: SecurityPolicy.Basic256Sha256,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 500 },
      requestedSessionTimeout: 60_000,
    });
    try {
      await client.connect(this.args.endpoint);
      const session = await client.createSession({ type: UserTokenType.UserName, userName: user, password });
      const namespaces = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;
      const ns = namespace ? namespaces.indexOf(namespace) : -1;
      this.sessions.set(name, { client, session, ns, subscription: null, events: [] });
      return { ns, securityMode: MessageSecurityMode[client.securityMode], policy: client.securityPolicy };
    } catch (err) {
      await client.disconnect().catch(() => {});
      throw err;
    }
  }

  async browse_children(session, nodeId) {
    const result = await session.browse({
      nodeId,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      nodeClassMask: 0,
      resultMask: 0x3f,
    });
    if (!result.statusCode.isGood()) throw new Error(`Browse ${nodeId}: ${result.statusCode.name}`);
    return result.references.map((r) => ({
      browseName: r.browseName.name,
      nodeId: r.nodeId.toString(),
      nodeClass: NodeClass[r.nodeClass],
      displayName: r.displayName.text,
      typeDefinition: r.typeDefinition.toString(),
    }));
  }

  async browse_path({ name, path: names }) {
    const { session } = this.entry(name);
    let nodeId = resolveNodeId("ObjectsFolder");
    for (const browseName of names) {
      const child = (await this.browse_children(session, nodeId)).find((c) => c.browseName === browseName);
      if (!child) throw new Error(`no ${browseName} under ${nodeId.toString()}`);
      nodeId = resolveNodeId(child.nodeId);
    }
    return { nodeId: nodeId.toString(), children: await this.browse_children(session, nodeId) };
  }

  async browse({ name, nodeId }) {
    const entry = this.entry(name);
    return { children: await this.browse_children(entry.session, this.nodeId(entry, nodeId)) };
  }

  async read({ name, nodeId }) {
    const entry = this.entry(name);
    const dv = await entry.session.read({ nodeId: this.nodeId(entry, nodeId), attributeId: AttributeIds.Value });
    return {
      value: plain(dv.value.value),
      dataType: DataType[dv.value.dataType],
      status: dv.statusCode.name,
      sourceTimestamp: plain(dv.sourceTimestamp),
    };
  }

  async attributes({ name, nodeId, attributes }) {
    const entry = this.entry(name);
    const id = this.nodeId(entry, nodeId);
    const dvs = await entry.session.read(attributes.map((a) => ({ nodeId: id, attributeId: AttributeIds[a] })));
    const out = {};
    attributes.forEach((a, i) => {
      out[a] = dvs[i].statusCode.isGood() ? plain(dvs[i].value.value) : dvs[i].statusCode.name;
    });
    return { attributes: out };
  }

  async subscription(entry) {
    if (!entry.subscription) {
      entry.subscription = await entry.session.createSubscription2({
        requestedPublishingInterval: 100,
        requestedLifetimeCount: 600,
        requestedMaxKeepAliveCount: 20,
        maxNotificationsPerPublish: 1000,
        publishingEnabled: true,
        priority: 10,
      });
    }
    return entry.subscription;
  }

  async subscribe({ name, nodeId }) {
    const entry = this.entry(name);
    const subscription = await this.subscription(entry);
    const record = { values: [] };
    const item = await subscription.monitor(
      { nodeId: this.nodeId(entry, nodeId), attributeId: AttributeIds.Value },
      { samplingInterval: 0, discardOldest: true, queueSize: 100 },
      TimestampsToReturn.Both,
    );
    item.on("changed", (dv) => {
      record.values.push({ value: plain(dv.value.value), status: dv.statusCode.name });
      this.waiters.wake();
    });
    this.items.push(record);
    return { item: this.items.length - 1 };
  }

  async wait_value({ item, equals, tolerance = 0, timeoutMs = 10_000 }) {
    const record = this.items[item];
    const test = () =>
      record.values.find(
        (v) => v.status === "Good" && typeof v.value === "number" && Math.abs(v.value - equals) <= tolerance,
      );
    const found = await this.waiters.wait(test, timeoutMs, `a data change to ${equals}`);
    return { ...found, seen: record.values };
  }

  async call({ name, objectId, methodId, args = [] }) {
    const entry = this.entry(name);
    const result = await entry.session.call({
      objectId: this.nodeId(entry, objectId),
      methodId: this.nodeId(entry, methodId),
      inputArguments: args.map((a) => new Variant({ dataType: DataType[a.type], value: a.value })),
    });
    return { status: result.statusCode.name, outputs: (result.outputArguments || []).map(plain) };
  }

  async subscribe_events({ name }) {
    const entry = this.entry(name);
    const subscription = await this.subscription(entry);
    const item = await subscription.monitor(
      { nodeId: resolveNodeId("Server"), attributeId: AttributeIds.EventNotifier },
      { samplingInterval: 0, discardOldest: true, queueSize: 1000, filter: constructEventFilter(EVENT_FIELDS) },
      TimestampsToReturn.Both,
    );
    let refreshing = false;
    item.on("changed", (fields) => {
      const event = {};
      EVENT_FIELDS.forEach((field, i) => {
        event[field] = plain(fields[i]);
      });
      if (event.EventType === REFRESH_START) refreshing = true;
      event.refresh = refreshing;
      if (event.EventType === REFRESH_END) refreshing = false;
      entry.events.push(event);
      this.waiters.wake();
    });
    return { subscriptionId: subscription.subscriptionId };
  }

  async condition_refresh({ name }) {
    const entry = this.entry(name);
    const before = entry.events.length;
    const status = await callConditionRefresh(entry.session, entry.subscription.subscriptionId);
    if (!status.isGood()) return { status: status.name };
    // The refresh ends with a RefreshEndEvent; what came between is the refreshed state.
    const end = await this.waiters.wait(
      () => {
        const i = entry.events.findIndex((e, j) => j >= before && e.EventType === REFRESH_END);
        return i < 0 ? undefined : i;
      },
      10_000,
      "RefreshEndEvent",
    );
    const start = entry.events.findIndex((e, j) => j >= before && e.EventType === REFRESH_START);
    return { status: status.name, started: start >= 0, events: entry.events.slice(start + 1, end) };
  }

  async wait_event({ name, conditionId, activeState, ackedState, refresh, timeoutMs = 10_000 }) {
    const entry = this.entry(name);
    const wanted = conditionId ? this.nodeId(entry, conditionId).toString() : null;
    const test = () =>
      entry.events.find(
        (e) =>
          (wanted === null || e.ConditionId === wanted) &&
          (activeState === undefined || e["ActiveState.Id"] === activeState) &&
          (ackedState === undefined || e["AckedState.Id"] === ackedState) &&
          (refresh === undefined || e.refresh === refresh),
      );
    return { event: await this.waiters.wait(test, timeoutMs, `an event of ${wanted}`) };
  }

  async acknowledge({ name, conditionId, eventId, comment }) {
    const entry = this.entry(name);
    const status = await acknowledgeCondition(
      entry.session,
      this.nodeId(entry, conditionId),
      Buffer.from(eventId, "hex"),
      comment,
    );
    return { status: status.name };
  }

  async history_raw({ name, nodeId, start, end, perRequest }) {
    const entry = this.entry(name);
    const details = new ReadRawModifiedDetails({
      isReadModified: false,
      startTime: new Date(start),
      endTime: new Date(end),
      numValuesPerNode: perRequest,
      returnBounds: false,
    });
    const values = [];
    const requests = [];
    let continuationPoint = null;
    do {
      const response = await entry.session.historyRead(
        new HistoryReadRequest({
          historyReadDetails: details,
          timestampsToReturn: TimestampsToReturn.Source,
          releaseContinuationPoints: false,
          nodesToRead: [{ nodeId: this.nodeId(entry, nodeId), continuationPoint }],
        }),
      );
      const result = response.results[0];
      if (result.statusCode.isBad()) return { status: result.statusCode.name, values, requests };
      const page = result.historyData?.dataValues ?? [];
      for (const dv of page) {
        values.push({ value: plain(dv.value.value), status: dv.statusCode.name, ts: plain(dv.sourceTimestamp) });
      }
      continuationPoint = result.continuationPoint && result.continuationPoint.length ? result.continuationPoint : null;
      requests.push({ count: page.length, continuation: continuationPoint !== null });
      if (requests.length > 100) throw new Error("history read does not end");
    } while (continuationPoint !== null);
    return { status: "Good", values, requests };
  }

  async quit() {
    for (const { client, session } of this.sessions.values()) {
      await session.close(true).catch(() => {});
      await client.disconnect().catch(() => {});
    }
    this.sessions.clear();
    await this.cm.dispose();
    return {};
  }
}

async function main() {
  const peer = new Peer(parseArgs(process.argv.slice(2)));
  reply({ ok: true, ...(await peer.init()) });
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const request = JSON.parse(line);
    if (!OPS.has(request.op)) {
      reply({ ok: false, error: `unknown op ${request.op}` });
      continue;
    }
    try {
      reply({ ok: true, ...(await peer[request.op](request)) });
    } catch (err) {
      process.stderr.write(`${request.op}: ${err?.stack ?? err}\n`);
      reply({ ok: false, status: statusName(err), error: String(err?.message || err) });
    }
    if (request.op === "quit") break;
  }
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`opcua_server_client: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
