// An OPC 30050 PackML machine served by node-opcua (another stack than asyncua), loaded from the
// official nodeset (node-opcua-nodesets), so that anycell's `profile: packml` is tested against a
// server it was not written alongside.
//
//   node packml_server.js --port 4842 --path /anycell/mill [--time-scale 0.02] [--instances 2]
//
// Objects/{urn:anycell:sim-machine}:Mill (and Mill2, ...) are PackMLBaseObjectType instances. The
// state-machine commands (Start, Hold, Stop, Reset, Abort, Clear ...) exist only on the ObjectTypes,
// bound there; a call's object says which machine. Products: 1 = POCKET_01, 2 = FACE_01.
// Log lines go to stderr ("Mill: CALL Start", "Mill: PRODUCT 2 FACE_01", "Mill: START FACE_01 {...}").
// When listening it prints one JSON line {"address": "opc.tcp://127.0.0.1:PORT/PATH"} on stdout.
"use strict";
const { OPCUAServer, Variant, DataType, StatusCodes, LocalizedText } = require("node-opcua");
const { nodesets } = require("node-opcua-nodesets");

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = parseInt(arg("port", "4842"), 10);
const resourcePath = arg("path", "/anycell/mill");
const timeScale = parseFloat(arg("time-scale", "1"));
const instances = parseInt(arg("instances", "1"), 10);
const PRODUCTS = { 1: { name: "POCKET_01", duration: 30 }, 2: { name: "FACE_01", duration: 20 } };
const PACKML = "http://opcfoundation.org/UA/PackML/";
// the one PackML transition table is anycell/packml_model.py; this server mirrors it for the commands it serves
const TRANSITIONS = { Start: { Idle: "Starting" }, Hold: { Execute: "Holding" }, Unhold: { Held: "Unholding" },
  Suspend: { Execute: "Suspending" }, Unsuspend: { Suspended: "Unsuspending" }, Clear: { Aborted: "Clearing" },
  Reset: { Complete: "Resetting", Stopped: "Resetting" } };
const AFTER = { Starting: "Execute", Holding: "Held", Unholding: "Execute", Suspending: "Suspended",
  Unsuspending: "Execute", Resetting: "Idle", Stopping: "Stopped", Aborting: "Aborted", Clearing: "Stopped",
  Completing: "Complete" };
const log = (line) => process.stderr.write(line + "\n");

(async () => {
  const server = new OPCUAServer({
    port, resourcePath, hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard, nodesets.packML],
    buildInfo: { productName: "anycell node-opcua PackML machine", buildNumber: "1" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:anycell:sim-machine");
  const p = addressSpace.getNamespaceIndex(PACKML);
  const baseType = addressSpace.findObjectType("PackMLBaseObjectType", p);
  const execType = addressSpace.findObjectType("PackMLExecuteStateMachineType", p);
  const machType = addressSpace.findObjectType("PackMLMachineStateMachineType", p);
  const smType = addressSpace.findObjectType("PackMLBaseStateMachineType", p);
  const machines = {};
  const child = (node, name) => node.getComponentByName(name, p) || node.getComponentByName(name);
  for (let i = 1; i <= instances; i++) {
    const name = i === 1 ? "Mill" : "Mill" + i;
    const inst = baseType.instantiate({ browseName: { name, namespaceIndex: ns.index },
                                        organizedBy: addressSpace.rootFolder.objects, nodeId: `s=${name}` });
    const sm = child(inst, "BaseStateMachine");
    const ms = child(sm, "MachineState");
    const es = child(ms, "ExecuteState");
    const m = { name, inst, state: "Idle", unitMode: 0, program: null, params: {}, parts: 0, progress: 0, timer: null,
                cur: { base: sm.getPropertyByName ? sm.getComponentByName("CurrentState") : null,
                       machine: ms.getComponentByName("CurrentState"), execute: es.getComponentByName("CurrentState") },
                owners: [sm.nodeId.toString(), ms.nodeId.toString(), es.nodeId.toString(), inst.nodeId.toString()] };
    m.cur.base = sm.getComponentByName("CurrentState");
    m.unitModeVar = child(child(inst, "Status"), "UnitModeCurrent");
    machines[name] = m;
  }
  const byObject = (ctx) => Object.values(machines).find((m) => m.owners.includes(ctx.object.nodeId.toString()));
  const lt = (text) => new Variant({ dataType: DataType.LocalizedText, value: new LocalizedText({ text, locale: "en" }) });
  const publish = (m) => {
    const st = m.state;
    const base = st === "Aborting" || st === "Aborted" ? st : "Cleared";
    const mach = ["Stopped", "Stopping", "Clearing", "Aborting", "Aborted"].includes(st) ? st : "Running";
    m.cur.base.setValueFromSource(lt(base));
    m.cur.machine.setValueFromSource(lt(mach));
    m.cur.execute.setValueFromSource(lt(mach === "Running" ? st : ""));
    if (m.unitModeVar) m.unitModeVar.setValueFromSource(new Variant({ dataType: DataType.Int32, value: m.unitMode }));
  };
  const setState = (m, s) => { m.state = s; publish(m); log(`${m.name}: STATE ${s}`); };
  const transition = (m, t) => {
    setState(m, t);
    setTimeout(() => {
      if (m.state !== t) return;
      setState(m, AFTER[t]);
      if (m.state === "Execute" && !m.timer) {
        const duration = PRODUCTS[m.product].duration * timeScale, step = 0.02;
        m.timer = setInterval(() => {
          if (m.state !== "Execute") return;
          m.progress = Math.min(1, m.progress + step / duration);
          if (m.progress >= 1) {
            clearInterval(m.timer); m.timer = null; m.parts += 1;
            log(`${m.name}: DONE ${PRODUCTS[m.product].name} part_count=${m.parts}`);
            transition(m, "Completing");
          }
        }, step * 1000);
      }
    }, 50);
  };
  const command = (m, name) => {
    log(`${m.name}: CALL ${name}`);
    if (name === "Stop" || name === "Abort") {
      const no = name === "Stop" ? ["Stopped", "Stopping", "Aborting", "Aborted", "Clearing"] : ["Aborting", "Aborted"];
      if (no.includes(m.state)) return StatusCodes.BadInvalidState;
      if (m.timer) { clearInterval(m.timer); m.timer = null; }
      transition(m, name === "Stop" ? "Stopping" : "Aborting");
      return StatusCodes.Good;
    }
    const next = (TRANSITIONS[name] || {})[m.state];
    if (!next) return StatusCodes.BadInvalidState;
    if (name === "Start") {
      if (m.unitMode !== 1 || !PRODUCTS[m.product]) return StatusCodes.BadInvalidState;
      m.progress = 0;
      const params = {};
      for (const k of Object.keys(m.params).sort()) params[k] = m.params[k];
      log(`${m.name}: START ${PRODUCTS[m.product].name} ${JSON.stringify(params)}`);
    }
    transition(m, next);
    return StatusCodes.Good;
  };
  const bind = (method, fn) => method.bindMethod((inputArguments, context, callback) => {
    const m = byObject(context);
    if (!m) return callback(null, { statusCode: StatusCodes.BadNodeIdUnknown, outputArguments: [] });
    callback(null, { statusCode: fn(m, inputArguments), outputArguments: [] });
  });
  for (const [type, names] of [[execType, ["Start", "Hold", "Unhold", "Suspend", "Unsuspend", "Reset"]],
                               [machType, ["Stop", "Reset"]], [smType, ["Abort", "Clear"]]]) {
    for (const name of names) {
      const method = type.getMethodByName(name, p) || type.getMethodByName(name);
      bind(method, (m) => command(m, name));
    }
  }
  const round = (v) => Math.round(v * 1e6) / 1e6;
  const instanceMethods = {
    SetUnitMode: (m, args) => {
      if (!["Idle", "Stopped", "Aborted", "Complete"].includes(m.state)) return StatusCodes.BadInvalidState;
      m.unitMode = args[0].value; log(`${m.name}: UNIT_MODE ${m.unitMode}`); publish(m); return StatusCodes.Good;
    },
    SetProduct: (m, args) => {
      const product = (args[0].value || [])[0];
      if (!product || !PRODUCTS[product.productID]) { log(`${m.name}: REJECT product`); return StatusCodes.BadInvalidArgument; }
      m.product = product.productID;
      m.params = {};
      for (const d of product.processVariables || []) m.params[d.name] = round(d.value);
      log(`${m.name}: PRODUCT ${m.product} ${PRODUCTS[m.product].name}`);
      return StatusCodes.Good;
    },
    SetParameter: (m, args) => {
      for (const d of args[0].value || []) m.params[d.name] = round(d.value);
      return StatusCodes.Good;
    },
  };
  for (const m of Object.values(machines)) {
    for (const [name, fn] of Object.entries(instanceMethods)) {
      const method = m.inst.getMethodByName(name, p) || m.inst.getMethodByName(name);
      if (method) bind(method, fn);
    }
    publish(m);
  }
  // the same methods on the ObjectType, for a client that calls them there
  for (const [name, fn] of Object.entries(instanceMethods)) {
    const method = baseType.getMethodByName(name, p) || baseType.getMethodByName(name);
    if (method) bind(method, fn);
  }
  await server.start();
  process.stdout.write(JSON.stringify({ address: `opc.tcp://127.0.0.1:${port}${resourcePath}` }) + "\n");
  const shutdown = () => server.shutdown(0).then(() => process.exit(0));
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
})().catch((err) => { console.error(err); process.exit(1); });
