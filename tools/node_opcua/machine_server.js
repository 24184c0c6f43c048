// A machine-tool OPC UA server built with node-opcua (another OPC UA stack than asyncua), so that
// anycell's OPC UA driver is tested against a server it was not written alongside.
//
//   node machine_server.js --port 4841 --path /anycell/mill [--time-scale 0.02]
//
// Address space (namespace 1 is node-opcua's own namespace):
//   Objects/1:Machine/1:State (String, PackML state name), 1:Program (String, writable),
//   1:Progress (Double 0..1), 1:PartCount (UInt32), 1:Alarm (String),
//   1:Parameters/1:<name> (Double, writable), and the methods 1:Start, 1:Stop, 1:Hold,
//   1:Unhold, 1:Reset, 1:Abort, 1:Clear (no arguments) and 1:SetParameter(String, Double) -> Boolean.
// When listening it prints one JSON line {"address": "opc.tcp://127.0.0.1:PORT/PATH"} on stdout.
"use strict";
const { OPCUAServer, Variant, DataType, StatusCodes, MessageSecurityMode, SecurityPolicy } = require("node-opcua");

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = parseInt(arg("port", "4841"), 10);
const resourcePath = arg("path", "/anycell/mill");
const timeScale = parseFloat(arg("time-scale", "1"));
const programs = { POCKET_01: { duration: 30, parameters: ["depth", "feed", "spindle_rpm"] },
                   FACE_01: { duration: 20, parameters: ["depth", "feed"] } };
const TRANSITIONS = { Idle: { Start: "Starting" }, Execute: { Hold: "Holding" }, Held: { Unhold: "Unholding" },
                      Complete: { Reset: "Resetting" }, Stopped: { Reset: "Resetting" }, Aborted: { Clear: "Clearing" } };
const AFTER = { Starting: "Execute", Holding: "Held", Unholding: "Execute", Resetting: "Idle", Stopping: "Stopped",
                Aborting: "Aborted", Clearing: "Stopped", Completing: "Complete" };

(async () => {
  const server = new OPCUAServer({
    port, resourcePath, hostname: "127.0.0.1",
    securityModes: [MessageSecurityMode.None], securityPolicies: [SecurityPolicy.None],
    buildInfo: { productName: "anycell node-opcua machine", buildNumber: "1" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const machine = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Machine", nodeId: "s=Machine" });
  const rw = { accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite" };
  const mk = (name, dataType, value, writable) => ns.addVariable({
    componentOf: machine, browseName: name, nodeId: "s=Machine." + name, dataType,
    value: { dataType: DataType[dataType], value }, ...(writable ? rw : {}) });
  const v = {
    state: mk("State", "String", "Idle"), program: mk("Program", "String", "", true),
    progress: mk("Progress", "Double", 0.0), partCount: mk("PartCount", "UInt32", 0), alarm: mk("Alarm", "String", ""),
  };
  const folder = ns.addObject({ componentOf: machine, browseName: "Parameters", nodeId: "s=Machine.Parameters" });
  const params = {};
  for (const p of new Set(Object.values(programs).flatMap((x) => x.parameters))) {
    params[p] = ns.addVariable({ componentOf: folder, browseName: p, nodeId: "s=Machine.Parameters." + p,
                                 dataType: "Double", value: { dataType: DataType.Double, value: 0.0 }, ...rw });
  }
  const set = (node, dataType, value) => node.setValueFromSource(new Variant({ dataType, value }));
  let state = "Idle", progress = 0, parts = 0, timer = null;
  const setState = (s) => { state = s; set(v.state, DataType.String, s); console.error("STATE " + s); };
  const transition = (t) => {
    setState(t);
    setTimeout(() => {
      if (state !== t) return;
      setState(AFTER[t]);
      if (state === "Execute" && !timer) {
        const prog = programs[v.program.readValue().value.value];
        const step = 0.02, duration = prog.duration * timeScale;
        timer = setInterval(() => {
          if (state !== "Execute") return;
          progress = Math.min(1, progress + step / duration);
          set(v.progress, DataType.Double, progress);
          if (progress >= 1) {
            clearInterval(timer); timer = null; parts += 1;
            set(v.partCount, DataType.UInt32, parts);
            transition("Completing");
          }
        }, step * 1000);
      }
    }, 50);
  };
  const command = (name) => {
    if (name === "Stop" || name === "Abort") {
      if (timer) { clearInterval(timer); timer = null; }
      transition(name === "Stop" ? "Stopping" : "Aborting");
      return StatusCodes.Good;
    }
    const next = (TRANSITIONS[state] || {})[name];
    if (!next) return StatusCodes.BadInvalidState;
    if (name === "Start") {
      const prog = v.program.readValue().value.value;
      if (!programs[prog]) return StatusCodes.BadInvalidArgument;
      progress = 0; set(v.progress, DataType.Double, 0);
      const values = {};
      for (const p of Object.keys(params).sort()) values[p] = params[p].readValue().value.value;
      console.error("START " + prog + " " + JSON.stringify(values));
    }
    if (name === "Clear") set(v.alarm, DataType.String, "");
    transition(next);
    return StatusCodes.Good;
  };
  for (const name of ["Start", "Stop", "Hold", "Unhold", "Reset", "Abort", "Clear"]) {
    const m = ns.addMethod(machine, { browseName: name, nodeId: "s=Machine." + name, inputArguments: [], outputArguments: [] });
    m.bindMethod((inputArguments, context, callback) => {
      callback(null, { statusCode: command(name), outputArguments: [] });
    });
  }
  const sp = ns.addMethod(machine, {
    browseName: "SetParameter", nodeId: "s=Machine.SetParameter",
    inputArguments: [{ name: "name", dataType: DataType.String }, { name: "value", dataType: DataType.Double }],
    outputArguments: [{ name: "ok", dataType: DataType.Boolean }],
  });
  sp.bindMethod((inputArguments, context, callback) => {
    const [name, value] = inputArguments.map((a) => a.value);
    if (!params[name]) return callback(null, { statusCode: StatusCodes.BadNoMatch, outputArguments: [] });
    set(params[name], DataType.Double, value);
    callback(null, { statusCode: StatusCodes.Good,
                     outputArguments: [new Variant({ dataType: DataType.Boolean, value: true })] });
  });
  await server.start();
  process.stdout.write(JSON.stringify({ address: `opc.tcp://127.0.0.1:${port}${resourcePath}` }) + "\n");
  const shutdown = () => server.shutdown(0).then(() => process.exit(0));
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
})().catch((err) => { console.error(err); process.exit(1); });
