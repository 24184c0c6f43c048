// A machine tool with OPC 40001-3 Job Management (Machinery Jobs, as used by OPC 40501 Machine Tools),
// served by node-opcua from the official nodesets (asyncua cannot import the 2024 Machinery Jobs /
// ISA-95 Job Control nodesets; node-opcua loads them).
//
//   node jobs_server.js --port 4843 --path /anycell/mill [--time-scale 0.02] [--log FILE] [--ready-file FILE]
//   (what anycell.sim.machines.launch_sim_machine starts for a `profile: machinery_jobs` machine)
//
// Objects/{urn:anycell:sim-machine}:Mill/{Machinery/Jobs}:JobManagement (JobManagementType). The job
// order methods (Store, Start, Pause, Resume, Stop, Abort, Clear) exist only on
// ISA95JobOrderReceiverObjectType and are bound there; each answers an Int64 ReturnStatus
// (0 done, 1 unknown JobOrderID, 2 not allowed in the job's state, 4 unknown work master, 8 JobOrderID
// already stored). JobOrderList holds ISA95JobOrderAndStateDataType entries with the ISA-95 state.
// Work masters: POCKET_01 (30 s), FACE_01 (20 s), times --time-scale.
// Log lines on stderr: "STORE <id> FACE_01 {params}", "CALL Start <id>", "START FACE_01 {params}", "ENDED <id>".
// When listening it prints one JSON line {"address": "opc.tcp://127.0.0.1:PORT/PATH"} on stdout.
"use strict";
const { OPCUAServer, Variant, DataType, LocalizedText, StatusCodes, VariantArrayType } = require("node-opcua");
const { nodesets } = require("node-opcua-nodesets");

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = parseInt(arg("port", "4843"), 10);
const resourcePath = arg("path", "/anycell/mill");
const timeScale = parseFloat(arg("time-scale", "1"));
const WORK_MASTERS = { POCKET_01: 30, FACE_01: 20 };
const STATE_NUMBERS = { NotAllowedToStart: 1, AllowedToStart: 2, Running: 3, Interrupted: 4, Ended: 5, Aborted: 6 };
const JOBS = "http://opcfoundation.org/UA/Machinery/Jobs/";
const ISA95 = "http://opcfoundation.org/UA/ISA95-JOBCONTROL_V2/";
const fs = require("fs");
const logFile = arg("log", null);
const readyFile = arg("ready-file", null);
const log = (line) => { process.stderr.write(line + "\n"); if (logFile) fs.appendFileSync(logFile, line + "\n"); };
const field = (o, name) => (o ? o[name[0].toLowerCase() + name.slice(1)] ?? o[name] ?? o[name.toLowerCase()] : undefined);

(async () => {
  const server = new OPCUAServer({
    port, resourcePath, hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard, nodesets.isa95JobControl, nodesets.machineryJobs],
    buildInfo: { productName: "anycell node-opcua job management machine", buildNumber: "1" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:anycell:sim-machine");
  const j = addressSpace.getNamespaceIndex(JOBS);
  const i95 = addressSpace.getNamespaceIndex(ISA95);
  const machine = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Mill", nodeId: "s=Mill" });
  const jmType = addressSpace.findObjectType("JobManagementType", j);
  const jm = jmType.instantiate({ browseName: { name: "JobManagement", namespaceIndex: j }, componentOf: machine,
                                  nodeId: "s=Mill.JobManagement" });
  const control = jm.getComponentByName("JobOrderControl", j);
  const listVar = control.getComponentByName("JobOrderList", i95) || control.getPropertyByName("JobOrderList", i95);
  const andStateType = addressSpace.findDataType("ISA95JobOrderAndStateDataType", i95);
  const stateType = addressSpace.findDataType("ISA95StateDataType", i95);
  const jobs = new Map();  // id -> { order, state, timer, progress, workMaster, params }
  const publish = () => {
    const value = [...jobs.values()].map((job) => addressSpace.constructExtensionObject(andStateType, {
      jobOrder: job.order,
      state: [addressSpace.constructExtensionObject(stateType, {
        stateText: new LocalizedText({ text: job.state, locale: "en" }), stateNumber: STATE_NUMBERS[job.state] })],
    }));
    listVar.setValueFromSource(new Variant({ dataType: DataType.ExtensionObject, arrayType: 1, value }));
  };
  const setState = (job, state) => { job.state = state; log(`STATE ${job.id} ${state}`); publish(); };
  const run = (job) => {
    const step = 0.02, duration = WORK_MASTERS[job.workMaster] * timeScale;
    job.timer = setInterval(() => {
      if (job.state !== "Running") return;
      job.progress = Math.min(1, job.progress + step / duration);
      if (job.progress >= 1) {
        clearInterval(job.timer); job.timer = null;
        log(`ENDED ${job.id}`);
        setState(job, "Ended");
      }
    }, step * 1000);
  };
  const rs = (code) => [new Variant({ dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [0, code] })];
  const handlers = {
    Store: (args) => {
      const order = args[0].value;
      const id = field(order, "JobOrderID");
      const wm = field((field(order, "WorkMasterID") || [])[0], "ID");
      if (jobs.has(id)) return rs(8);
      if (!WORK_MASTERS[wm]) { log(`REJECT work master ${wm}`); return rs(4); }
      const params = {};
      for (const p of field(order, "JobOrderParameters") || []) {
        const v = field(p, "Value");
        params[field(p, "ID")] = v && v.value !== undefined ? v.value : v;
      }
      jobs.set(id, { id, order, state: "AllowedToStart", timer: null, progress: 0, workMaster: wm, params });
      log(`STORE ${id} ${wm} ${JSON.stringify(params)}`);
      publish();
      return rs(0);
    },
    Start: (args) => {
      const job = jobs.get(args[0].value);
      log(`CALL Start ${args[0].value}`);
      if (!job) return rs(1);
      const busy = [...jobs.values()].some((x) => x.state === "Running" || x.state === "Interrupted");
      if (job.state !== "AllowedToStart" || busy) return rs(2);
      log(`START ${job.workMaster} ${JSON.stringify(job.params)}`);
      setState(job, "Running");
      run(job);
      return rs(0);
    },
    Pause: (args) => { const job = jobs.get(args[0].value); if (!job) return rs(1);
      if (job.state !== "Running") return rs(2); setState(job, "Interrupted"); return rs(0); },
    Resume: (args) => { const job = jobs.get(args[0].value); if (!job) return rs(1);
      if (job.state !== "Interrupted") return rs(2); setState(job, "Running"); return rs(0); },
    Stop: (args) => { const job = jobs.get(args[0].value); if (!job) return rs(1);
      if (!["Running", "Interrupted"].includes(job.state)) return rs(2);
      clearInterval(job.timer); job.timer = null; setState(job, "Ended"); return rs(0); },
    Abort: (args) => { const job = jobs.get(args[0].value); if (!job) return rs(1);
      if (["Ended", "Aborted"].includes(job.state)) return rs(2);
      clearInterval(job.timer); job.timer = null; setState(job, "Aborted"); return rs(0); },
    Clear: (args) => { const job = jobs.get(args[0].value); log(`CALL Clear ${args[0].value}`); if (!job) return rs(1);
      if (!["Ended", "Aborted"].includes(job.state)) return rs(2); jobs.delete(job.id); publish(); return rs(0); },
  };
  const receiverType = addressSpace.findObjectType("ISA95JobOrderReceiverObjectType", i95);
  for (const [name, fn] of Object.entries(handlers)) {
    const methods = [receiverType.getMethodByName(name, i95), control.getMethodByName(name, i95)].filter(Boolean);
    for (const method of methods) {
      method.bindMethod((inputArguments, context, callback) => {
        if (context.object.nodeId.toString() !== control.nodeId.toString()) {
          return callback(null, { statusCode: StatusCodes.BadNodeIdUnknown, outputArguments: [] });
        }
        let out;
        try { out = fn(inputArguments); } catch (err) { log("ERROR " + err); out = rs(2); }
        callback(null, { statusCode: StatusCodes.Good, outputArguments: out });
      });
    }
  }
  publish();
  await server.start();
  const info = JSON.stringify({ address: `opc.tcp://127.0.0.1:${port}${resourcePath}`, pid: process.pid });
  if (readyFile) { fs.writeFileSync(readyFile + ".tmp", info); fs.renameSync(readyFile + ".tmp", readyFile); }
  process.stdout.write(info + "\n");
  const shutdown = () => server.shutdown(0).then(() => process.exit(0));
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
})().catch((err) => { console.error(err); process.exit(1); });
