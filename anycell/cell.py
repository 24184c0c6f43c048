"""The cell config: what a cell has and how each device is reached, in one YAML file.

An integrator writes one of these per cell (see ``cell_configs/``). The same
:class:`CellConfig` object feeds the simulator, the planners and the agent;
nothing else reads the YAML. All poses are in the cell frame, in meters and
radians, unless a field's name says otherwise (``offset`` is in its station's
frame, ``tcp`` in the robot's flange frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Union

from .documents import Document, PathKey, load_file
from .errors import UnresolvedReference
from .geometry import Box, Pose
from .resources import looks_like_name, resolve_cell_path
from .typed import Context, FileRef, convert_dataclass, spec

ID = r"[A-Za-z][A-Za-z0-9_\-]*"

#: Robot models that ship with pybullet_data and that anycell knows how to drive.
BUILTIN_ROBOTS: Dict[str, str] = {
    "franka_panda": "franka_panda/panda.urdf",
    "kuka_iiwa": "kuka_iiwa/model.urdf",
    "xarm6": "xarm/xarm6_robot.urdf",
}

MACHINE_KINDS = ("cnc_mill", "3d_printer", "laser_engraver", "conveyor", "inspection", "lathe", "generic")


@dataclass(frozen=True, kw_only=True)
class CellInfo:
    """Who the cell is: a stable id (used as the ROS namespace) and a readable name."""

    id: str = spec("stable cell id; becomes the ROS 2 namespace /<id>", pattern=ID)
    name: str = spec("readable name for people", default="")
    description: str = spec("free text", default="")


@dataclass(frozen=True, kw_only=True)
class Tool:
    """The end effector: a parallel gripper (fingers close on the part) or a suction cup.

    Its geometry is part of the robot's URDF, or its own URDF (``urdf``) fixed to the flange at
    ``mount``; the TCP is in the flange frame either way.
    """

    kind: Literal["parallel_gripper", "suction"] = spec("the tool type")
    tcp: Pose = spec("tool center point in the robot's flange frame", default_factory=Pose)
    max_opening: float = spec("gripper stroke between the fingers, meters", default=0.08, minimum=0.0)
    force: float = spec("grip force in newtons (or suction hold force)", default=40.0, exclusive_minimum=0.0)
    payload: float = spec("heaviest part the tool can hold, kilograms", default=3.0, exclusive_minimum=0.0)
    finger_length: float = spec("how far the fingertips reach below the hand, meters: parts standing taller "
                                "than this above a grasped part would hit the hand", default=0.05,
                                exclusive_minimum=0.0)
    cup_radius: float = spec("suction cup radius, meters: the cup needs this much free face; the planner, "
                             "collision model, feasibility checks and simulator all use this one figure",
                             default=0.01, exclusive_minimum=0.0)
    joints: List[str] = spec("the gripper's driven finger joints, by URDF joint name (sliding or hinged); joints "
                             "that mimic them follow. Default for built-in models: their own fingers",
                             default_factory=list)
    open: List[float] = spec("positions of ``joints`` with the gripper open (m or rad; default: each joint's "
                             "upper limit)", default_factory=list)
    closed: List[float] = spec("positions of ``joints`` with the gripper closed on nothing (default: each joint's "
                               "lower limit)", default_factory=list)
    urdf: Optional[FileRef] = spec("the tool's own URDF or .urdf.xacro, relative to this file: attached to the robot's "
                                   "flange by a fixed joint (its root link at ``mount``), so the planner, collision "
                                   "model, feasibility checks and simulator all read its geometry. Default: the tool "
                                   "is part of the robot's URDF (or a suction cup made from cup_radius)", default=None)
    xacro_args: Dict[str, str] = spec("arguments for a .urdf.xacro tool file (name -> value)", default_factory=dict)
    package_paths: List[str] = spec("folders that hold the ROS packages named by the tool's package:// URIs "
                                    "(relative to this file); the robot's package_paths and the ament index are "
                                    "searched too", default_factory=list)
    mount: Pose = spec("where the tool URDF's root link sits in the robot's flange frame", default_factory=Pose)

    def check(self, path: PathKey, ctx: Context) -> None:
        if self.urdf is None:
            for name in ("xacro_args", "package_paths"):
                if getattr(self, name):
                    raise ctx.error(path + (name,), f"tool.{name} needs a tool urdf",
                                    "add urdf: robots/my_gripper/urdf/gripper.urdf.xacro, or remove it")
            if self.mount != Pose():
                raise ctx.error(path + ("mount",), "tool.mount places a tool URDF, and this tool has none",
                                "add urdf: ..., or give the TCP alone (tool.tcp, in the flange frame)")
        elif self.xacro_args and not str(self.urdf).endswith(".xacro"):
            raise ctx.error(path + ("xacro_args",), "xacro_args need a .xacro tool file",
                            "remove xacro_args or point tool.urdf at the .urdf.xacro file")
        object.__setattr__(self, "package_paths", _folders(self.package_paths, path + ("package_paths",), ctx))
        for name in ("open", "closed"):
            values = getattr(self, name)
            if values and len(values) != len(self.joints):
                raise ctx.error(path + (name,), f"{len(values)} value(s) for {len(self.joints)} finger joint(s)",
                                "give one position per name in tool.joints")
        if self.joints and self.kind == "suction":
            raise ctx.error(path + ("joints",), "a suction tool has no finger joints",
                            "remove tool.joints, or use kind: parallel_gripper")


@dataclass(frozen=True, kw_only=True)
class JointLimit:
    """Overrides for one joint; anything left out comes from the URDF or the model's datasheet."""

    lower: Optional[float] = spec("lowest position, radians", default=None)
    upper: Optional[float] = spec("highest position, radians", default=None)
    velocity: Optional[float] = spec("maximum speed, rad/s", default=None, exclusive_minimum=0.0)
    acceleration: Optional[float] = spec("maximum acceleration, rad/s^2", default=None, exclusive_minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ctx.error(path + ("upper",), f"upper={self.upper} is not above lower={self.lower}",
                            "swap the limits")


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """What a robot (or the cell) can hold: the tightest tolerances a job may ask of it."""

    position: float = spec("repeatable placement accuracy, meters", default=0.001, exclusive_minimum=0.0)
    angle: float = spec("repeatable orientation accuracy, radians", default=0.02, exclusive_minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class GripperCommand:
    """How the agent works a real robot's gripper: a std_srvs/SetBool service, or a JointTrajectory
    to the gripper joints (what ros2_control's joint trajectory controllers accept)."""

    interface: Literal["set_bool", "joint_trajectory"] = spec("the gripper's command interface",
                                                              default="set_bool")
    name: str = spec("service (set_bool) or topic (joint_trajectory), relative to the cell namespace; "
                     "default <robot>/gripper or <robot>/gripper_controller/joint_trajectory", default="")
    joints: List[str] = spec("gripper joint names (joint_trajectory)", default_factory=list)
    open: List[float] = spec("joint positions when open (joint_trajectory)", default_factory=list)
    closed: List[float] = spec("joint positions when fully closed (joint_trajectory)", default_factory=list)
    duration: float = spec("time to open or close, seconds", default=1.0, exclusive_minimum=0.0, maximum=60.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if self.interface == "joint_trajectory":
            if not self.joints or len(self.open) != len(self.joints) or len(self.closed) != len(self.joints):
                raise ctx.error(path, "a joint_trajectory gripper needs joints, open and closed of one length",
                                "joints: [finger_joint1], open: [0.04], closed: [0.0]")


@dataclass(frozen=True, kw_only=True)
class RobotConfig:
    """An arm: a built-in model or a URDF, where it stands, its tool and its limits."""

    id: str = spec("robot id, unique in the cell", pattern=ID)
    model: Optional[str] = spec("built-in model: " + ", ".join(BUILTIN_ROBOTS), default=None)
    urdf: Optional[FileRef] = spec("path to a URDF or .urdf.xacro, relative to this file (instead of model)",
                                   default=None)
    xacro_args: Dict[str, str] = spec("arguments for a .urdf.xacro file (name -> value)", default_factory=dict)
    package_paths: List[str] = spec("folders that hold the ROS packages named by package:// mesh URIs (relative to "
                                    "this file); on a ROS machine the ament index is searched too",
                                    default_factory=list)
    flange: Optional[str] = spec("the link the tool is mounted on (the arm is the chain from the URDF's root to "
                                 "it); default: the built-in model's flange, else 'tool0' when the URDF has it",
                                 default=None)
    base: Pose = spec("the robot base in the cell frame", default_factory=Pose)
    tool: Tool = spec("the end effector", default_factory=lambda: Tool(kind="parallel_gripper"))
    home: Optional[List[float]] = spec("home joint positions of the arm chain, radians (default for built-in "
                                       "models: their documented ready pose; required for a urdf robot)",
                                       default=None)
    joint_limits: Dict[str, JointLimit] = spec("per-joint overrides, by joint name", default_factory=dict)
    accuracy: Accuracy = spec("what this robot can hold", default_factory=Accuracy)
    controller_topic: str = spec("JointTrajectory topic of the real controller, relative to the cell namespace",
                                 default="")
    joint_states_topic: str = spec("JointState topic of the real robot, relative to the cell namespace "
                                   "(default <robot>/joint_states)", default="")
    gripper: GripperCommand = spec("how the gripper is commanded", default_factory=GripperCommand)
    rate_per_hour: float = spec("cost of one hour of this robot, in the cell's currency", default=0.0, minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        if (self.model is None) == (self.urdf is None):
            raise ctx.error(path, "give exactly one of 'model' or 'urdf'",
                            "model: franka_panda (built in) or urdf: robots/my_arm.urdf")
        if self.model is not None and self.model not in BUILTIN_ROBOTS:
            import difflib

            close = difflib.get_close_matches(self.model, list(BUILTIN_ROBOTS), n=1)
            raise ctx.error(path + ("model",), f"unknown built-in model '{self.model}'",
                            f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(BUILTIN_ROBOTS))
        if self.urdf is not None and self.home is None:
            raise ctx.error(path, "a urdf robot needs a declared 'home' (one value per arm joint, radians)",
                            "give the arm's ready pose, e.g. home: [0, -1.57, 1.57, -1.57, -1.57, 0]")
        if self.xacro_args and (self.urdf is None or not str(self.urdf).endswith(".xacro")):
            raise ctx.error(path + ("xacro_args",), "xacro_args need a .xacro urdf file",
                            "remove xacro_args or point urdf at the .urdf.xacro file")
        object.__setattr__(self, "package_paths", _folders(self.package_paths, path + ("package_paths",), ctx))


def _folders(folders: List[str], path: PathKey, ctx: Context) -> List[str]:
    """``package_paths`` made absolute (relative to the cell config file); a missing folder is an error."""
    base = ctx.base_dir or os.getcwd()
    resolved = []
    for i, folder in enumerate(folders):
        full = os.path.realpath(os.path.join(base, os.path.expanduser(folder)))
        if not os.path.isdir(full):
            raise ctx.error(path + (i,), f"folder '{folder}' not found (looked for {full})",
                            "paths are relative to the cell config file")
        resolved.append(full)
    return resolved


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """OPC UA transport security and where the certificates are."""

    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = spec(
        "security policy", default="None")
    mode: Literal["None", "Sign", "SignAndEncrypt"] = spec("message security mode", default="None")
    certificate: Optional[FileRef] = spec("this client's certificate (DER or PEM)", default=None)
    private_key: Optional[FileRef] = spec("this client's private key (PEM)", default=None)
    trusted_server_certificates: List[FileRef] = spec(
        "server certificates to trust; any other server certificate is refused", default_factory=list)

    def check(self, path: PathKey, ctx: Context) -> None:
        if (self.policy == "None") != (self.mode == "None"):
            raise ctx.error(path, f"policy {self.policy} does not go with mode {self.mode}",
                            "use policy None with mode None, or a real policy with Sign/SignAndEncrypt")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ctx.error(path, "a secure policy needs 'certificate' and 'private_key'",
                            "generate a client certificate and name both files here")


@dataclass(frozen=True, kw_only=True)
class OpcUaDriver:
    """A machine reached over OPC UA (asyncua), on TCP."""

    kind: Literal["opcua"] = spec("driver type")
    endpoint: str = spec("server endpoint", examples=["opc.tcp://10.0.0.5:4840"], pattern=r"opc\.tcp://.+")
    security: SecurityConfig = spec("transport security", default_factory=SecurityConfig)
    username: Optional[str] = spec("user name for login (password from the environment)", default=None)
    password_env: Optional[str] = spec("environment variable that holds the password", default=None)
    user_certificate: Optional[FileRef] = spec("X.509 user identity: certificate (DER or PEM) to log in with",
                                               default=None)
    user_private_key: Optional[FileRef] = spec("X.509 user identity: its private key (PEM)", default=None)
    profile: Literal["custom", "packml", "machinery_jobs"] = spec(
        "how the machine is modelled: packml (OPC 30050), machinery_jobs (OPC 40001-3 job orders, as in OPC "
        "40501 machine tools) - both need only 'object' - or custom (the node map)",
        default="custom")
    object: Optional[str] = spec(
        "the machine instance: browse path or node id; relative node and method paths start here",
        default=None, examples=["0:Objects/{urn:vendor:machine}:Filler", "nsu=urn:vendor:machine;s=Filler"])
    nodes: Dict[str, str] = spec(
        "machine variables -> node ids ('ns=2;s=State', 'nsu=URI;s=State') or browse paths "
        "('0:Objects/2:Machine/2:State', '{URI}:Name' segments; relative to 'object' unless from 0:Objects)",
        default_factory=dict)
    methods: Dict[str, str] = spec(
        "machine methods (start, stop, hold, ...) -> browse path (the method is called on the object of that "
        "path) or node id (called on 'object')", default_factory=dict)
    state_values: Dict[str, str] = spec(
        "what the state node reports (text, or a number as text) -> PackML state name", default_factory=dict,
        examples=[{"0": "Idle", "1": "Execute", "Running": "Execute"}])
    products: Dict[str, int] = spec(
        "profile packml: program name -> PackML ProductID (a program named by a number needs no entry)",
        default_factory=dict, examples=[{"POCKET_01": 1}])
    progress_scale: float = spec("progress node value x this = fraction 0..1 (0.01 for percent)", default=1.0,
                                 exclusive_minimum=0.0)
    timeout: float = spec("timeout on every call, seconds", default=5.0, exclusive_minimum=0.0)

    def check(self, path: PathKey, ctx: Context) -> None:
        from .packml_model import STATES

        if (self.user_certificate is None) != (self.user_private_key is None):
            raise ctx.error(path + ("user_certificate",), "an X.509 user identity needs both files",
                            "give user_certificate and user_private_key")
        if self.user_certificate is not None and self.username:
            raise ctx.error(path + ("username",), "give a user name or a user certificate, not both",
                            "remove one of them")
        if self.profile != "custom" and not self.object:
            raise ctx.error(path + ("object",), f"profile {self.profile} needs 'object', the machine instance",
                            "e.g. object: 0:Objects/{urn:vendor:machine}:Filler")
        for raw, name in self.state_values.items():
            if name not in STATES:
                raise ctx.error(path + ("state_values", raw), f"'{name}' is not a PackML state",
                                "one of: " + ", ".join(STATES))


#: One entry of allowed_gcodes/forbidden_gcodes: a G or M code with an optional sub-code, or a GRBL $ command.
GCODE_ENTRY = r"^(?:[GMgm]\d{1,4}(?:\.\d{1,3})?|\$[A-Za-z0-9]*)$"


@dataclass(frozen=True, kw_only=True)
class SerialDriver:
    """A machine reached over a serial port, speaking GRBL or Marlin G-code."""

    kind: Literal["serial"] = spec("driver type")
    port: str = spec("serial device", examples=["/dev/ttyUSB0", "/dev/serial/by-id/usb-..."])
    baud: int = spec("baud rate", default=115200, minimum=300, maximum=4000000)
    dialect: Literal["grbl", "marlin"] = spec("firmware protocol")
    allowed_gcodes: List[str] = spec("if set, only these commands may be sent (e.g. G0, G1, M104)",
                                     default_factory=list, pattern=GCODE_ENTRY)
    forbidden_gcodes: List[str] = spec("commands never sent (e.g. M502 factory reset); a decimal sub-code the "
                                       "firmware does not have counts as its integer code (M502.9 is M502)",
                                       default_factory=list, pattern=GCODE_ENTRY)
    timeout: float = spec("timeout for one reply, seconds (long waits like M109 are handled apart)",
                          default=10.0, exclusive_minimum=0.0)
    streaming: Literal["character_counting", "send_response"] = spec(
        "GRBL flow control: character_counting keeps GRBL's 128-byte buffer full (fast on short segments); "
        "send_response sends one line per ok (nothing queued behind a refused line)",
        default="character_counting")
    work_offset: Optional[List[float]] = spec(
        "GRBL G54 work offset: the machine coordinates of the work zero [x, y, z], meters (GRBL's machine "
        "space is negative from the homed corner, so these are usually negative); set with G10 L2 P1 on "
        "connect when the controller's differs", default=None, length=3)
    unknown_command: Literal["fail", "warn"] = spec(
        "Marlin 'echo:Unknown command': fail the program (as GRBL's error:20 does) or only warn",
        default="fail")
    autoreport_interval: int = spec("Marlin temperature auto-report period, seconds (M155 S<n>); 0 turns it off",
                                    default=1, minimum=0, maximum=60)

    def check(self, path: PathKey, ctx: Context) -> None:
        for name in ("allowed_gcodes", "forbidden_gcodes"):
            for i, code in enumerate(getattr(self, name)):
                if code.startswith("$") and self.dialect != "grbl":
                    raise ctx.error(path + (name, i), f"'{code}' is a GRBL system command, not {self.dialect} G-code",
                                    "list G and M codes, e.g. M502")
        both = {c.upper() for c in self.allowed_gcodes} & {c.upper() for c in self.forbidden_gcodes}
        if both:
            raise ctx.error(path + ("forbidden_gcodes",), f"{', '.join(sorted(both))} both allowed and forbidden",
                            "list each code in one of the two")
        if self.work_offset is not None and self.dialect != "grbl":
            raise ctx.error(path + ("work_offset",), "work_offset is a GRBL setting",
                            "set a Marlin printer's origin with its own homing (G28) and M206")


@dataclass(frozen=True, kw_only=True)
class SimDriver:
    """A machine that only exists in simulation; anycell starts a simulator speaking ``protocol``."""

    kind: Literal["sim"] = spec("driver type")
    protocol: Literal["grbl", "marlin", "opcua"] = spec("the wire protocol the simulated machine speaks")


if TYPE_CHECKING:  # what a type checker sees: one of the three, told apart by ``kind``
    Driver = Union[OpcUaDriver, SerialDriver, SimDriver]
else:
    class Driver:
        """How a machine is reached: ``kind`` is opcua, serial or sim."""

        @classmethod
        def VARIANTS(cls) -> Dict[str, type]:  # noqa: N802 - read by anycell.typed
            return {"opcua": OpcUaDriver, "serial": SerialDriver, "sim": SimDriver}


@dataclass(frozen=True, kw_only=True)
class Tending:
    """Where a robot puts a part into the machine and takes it out (cell frame, part pose)."""

    load: Pose = spec("pose of the part when loaded into the machine")
    unload: Optional[Pose] = spec("pose of the finished part for unloading (default: the load pose)",
                                  default=None)

    @property
    def unload_pose(self) -> Pose:
        return self.unload or self.load


@dataclass(frozen=True, kw_only=True)
class MachineConfig:
    """A machine: what it can do, where it stands, where it is tended and how it is driven."""

    id: str = spec("machine id, unique in the cell", pattern=ID)
    kind: Literal["cnc_mill", "3d_printer", "laser_engraver", "conveyor", "inspection", "lathe", "generic"] = spec(
        "what sort of machine")
    capabilities: List[str] = spec("processes it offers (print, mill, engrave, ...)", min_items=1,
                                   pattern=ID)
    pose: Pose = spec("the machine body's footprint centre in the cell frame", default_factory=Pose)
    size: List[float] = spec("the machine body's size [x, y, z], meters (for collisions)",
                             default_factory=lambda: [0.3, 0.3, 0.3], length=3, exclusive_minimum=0.0)
    tending: Tending = spec("where a robot loads and unloads it")
    driver: Driver = spec("how anycell reaches it: opcua, serial or sim")
    cycle_time: float = spec("default program duration, seconds, when the program gives none",
                             default=60.0, exclusive_minimum=0.0)
    rate_per_hour: float = spec("cost of one hour of this machine", default=0.0, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """One place in a feeder where a part of a given type waits."""

    part_type: str = spec("the part type held here (a job names it as source.feeder)", pattern=ID)
    offset: Pose = spec("slot pose in the station frame", default_factory=Pose)


@dataclass(frozen=True, kw_only=True)
class Uncertainty:
    """How precisely an inspection station measures (one standard deviation)."""

    position: float = spec("position uncertainty, meters", default=0.0002, minimum=0.0)
    angle: float = spec("angle uncertainty, radians", default=0.002, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Hold:
    """How a fixture holds the part put on it (the unit's base): a clamp or a vacuum plate.

    A held part does not move while the other parts are placed on it; the simulator models the hold
    as a constraint limited to ``force``, released when the robot takes the finished unit away.
    """

    kind: Literal["none", "clamp", "vacuum"] = spec("none, clamp or vacuum", default="none")
    force: float = spec("holding force, newtons", default=200.0, exclusive_minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Station:
    """A place in the cell: a feeder, an assembly fixture, an output or reject tray, an inspection station."""

    id: str = spec("station id, unique in the cell", pattern=ID)
    kind: Literal["feeder", "fixture", "output_tray", "reject_tray", "inspection"] = spec("what it is for")
    pose: Pose = spec("the station's top-surface centre in the cell frame", default_factory=Pose)
    size: List[float] = spec("footprint and height [x, y, z], meters; the top is at pose.z",
                             default_factory=lambda: [0.2, 0.2, 0.02], length=3, exclusive_minimum=0.0)
    slots: List[Slot] = spec("feeder slots (feeders only)", default_factory=list)
    capacity: int = spec("how many units it can hold (trays)", default=8, minimum=1)
    uncertainty: Uncertainty = spec("measurement uncertainty (inspection only)", default_factory=Uncertainty)
    rate_per_hour: float = spec("cost of one hour of this station (inspection)", default=0.0, minimum=0.0)
    hold: Hold = spec("how a fixture holds the unit's base part (fixtures only)", default_factory=Hold)

    def check(self, path: PathKey, ctx: Context) -> None:
        if self.hold.kind != "none" and self.kind != "fixture":
            raise ctx.error(path + ("hold",), f"a {self.kind} does not hold parts", "only fixtures have 'hold'")
        if self.slots and self.kind != "feeder":
            raise ctx.error(path + ("slots",), f"a {self.kind} has no slots", "only feeders have slots")
        if self.kind == "feeder" and not self.slots:
            raise ctx.error(path, "a feeder needs at least one slot",
                            "add slots: [{part_type: peg, offset: {xyz: [0, 0, 0]}}]")


@dataclass(frozen=True, kw_only=True)
class KeepOut:
    """A box that no robot link may enter (a fence, an operator's walkway)."""

    id: str = spec("name of the zone", pattern=ID)
    min: List[float] = spec("lowest corner [x, y, z], meters", length=3)
    max: List[float] = spec("highest corner [x, y, z], meters", length=3)

    @property
    def box(self) -> Box:
        return Box(min=self.min, max=self.max)

    def check(self, path: PathKey, ctx: Context) -> None:
        Box.check(self, path, ctx)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class EStop:
    """Where the emergency stop signal comes from; anycell stops when it trips."""

    kind: Literal["none", "opcua", "ros_topic", "serial_state", "serial_pin"] = spec(
        "signal source: an OPC UA variable, a std_msgs/Bool topic, a serial machine's state (alarm, door, "
        "kill), or a GRBL input pin", default="none")
    source: str = spec("opcua: machine_id/variable; ros_topic: the topic; serial_state: machine_id; "
                       "serial_pin: machine_id/pin letter of GRBL's Pn field (D door, H hold, R reset)",
                       default="")


@dataclass(frozen=True, kw_only=True)
class Safety:
    """Limits that hold whatever the job asks."""

    workspace: Box = spec("every robot target must lie inside this box")
    keep_out: List[KeepOut] = spec("zones no robot may enter", default_factory=list)
    max_speed_fraction: float = spec("fraction of each joint's velocity and acceleration limit used",
                                     default=0.5, exclusive_minimum=0.0, maximum=1.0)
    robot_margin: float = spec("the closest two robots of the cell may come to each other, meters (their plans "
                               "keep it, and so does the reservation of shared space when they move at once)",
                               default=0.02, exclusive_minimum=0.0)
    estop: EStop = spec("emergency stop source", default_factory=EStop)


@dataclass(frozen=True, kw_only=True)
class Camera:
    """A named viewpoint for snapshots."""

    id: str = spec("viewpoint name", pattern=ID)
    eye: List[float] = spec("camera position, meters", length=3)
    target: List[float] = spec("point looked at, meters", length=3)
    fov: float = spec("vertical field of view, degrees", default=60.0, exclusive_minimum=0.0, maximum=170.0)


@dataclass(frozen=True, kw_only=True)
class Costs:
    """The cell's transparent cost model for quotes (rates on each resource, plus these)."""

    currency: str = spec("ISO currency code", default="EUR")
    setup_per_job: float = spec("fixed cost per job", default=0.0, minimum=0.0)
    materials: Dict[str, float] = spec("material -> price per kilogram", default_factory=dict, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Durations:
    """Default durations (seconds) used by the scheduler until motion models give better ones."""

    pick_place: float = spec("one pick-and-place by a robot", default=8.0, exclusive_minimum=0.0)
    load: float = spec("loading a machine", default=8.0, exclusive_minimum=0.0)
    unload: float = spec("unloading a machine", default=8.0, exclusive_minimum=0.0)
    inspect: float = spec("inspecting one unit", default=5.0, exclusive_minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class CellConfig:
    """A manufacturing cell: robots, machines, stations, safety, costs."""

    cell: CellInfo = spec("who the cell is")
    robots: List[RobotConfig] = spec("the arms", min_items=1)
    machines: List[MachineConfig] = spec("the machines", default_factory=list)
    stations: List[Station] = spec("feeders, fixtures, trays, inspection", default_factory=list)
    safety: Safety = spec("limits that hold whatever the job asks")
    table: Optional[Box] = spec("the work table as a box (collision body)", default=None)
    cameras: List[Camera] = spec("named snapshot viewpoints", default_factory=list)
    costs: Costs = spec("the cost model for quotes", default_factory=Costs)
    durations: Durations = spec("default durations for scheduling", default_factory=Durations)
    schema_version: int = spec("version of this format", default=1, minimum=1, maximum=1)
    source_file: Optional[str] = field(default=None, compare=False, repr=False, init=False)
    document: Optional[Document] = field(default=None, compare=False, repr=False, init=False)

    def check(self, path: PathKey, ctx: Context) -> None:
        _unique_ids(ctx, path, "robots", self.robots)
        _unique_ids(ctx, path, "machines", self.machines)
        _unique_ids(ctx, path, "stations", self.stations)
        every: Dict[str, str] = {}
        for group in ("robots", "machines", "stations"):
            for i, item in enumerate(getattr(self, group)):
                if item.id in every:
                    raise ctx.error(path + (group, i, "id"),
                                    f"id '{item.id}' is already used by one of the {every[item.id]}",
                                    "robots, machines and stations share one id space", cls=UnresolvedReference)
                every[item.id] = group
        estop = self.safety.estop
        if estop.kind in ("opcua", "serial_state", "serial_pin"):
            where = path + ("safety", "estop", "source")
            mid, _, rest = estop.source.partition("/")
            machines = {m.id: m for m in self.machines}
            if mid not in machines:
                raise ctx.error(where, f"e-stop source names machine '{mid}', which is not in this cell",
                                "write it as <machine_id>/<variable> (opcua), <machine_id> (serial_state) "
                                "or <machine_id>/<pin> (serial_pin)", cls=UnresolvedReference)
            drv = machines[mid].driver
            proto = drv.dialect if drv.kind == "serial" else getattr(drv, "protocol", "opcua")
            if estop.kind == "opcua" and proto != "opcua":
                raise ctx.error(where, f"machine '{mid}' is not reached over OPC UA", "use serial_state or serial_pin")
            if estop.kind.startswith("serial") and proto not in ("grbl", "marlin"):
                raise ctx.error(where, f"machine '{mid}' is not a serial G-code machine", "use kind: opcua")
            if estop.kind == "serial_pin" and (proto != "grbl" or len(rest) != 1 or rest not in "XYZPDHRS"):
                raise ctx.error(where, "serial_pin needs a GRBL machine and one of its Pn pin letters "
                                "(X Y Z P D H R S)", "e.g. router/D for the safety door input")

    # ---- lookups used by every layer
    def robot(self, rid: str) -> RobotConfig:
        return _find(self.robots, rid, "robot")

    def machine(self, mid: str) -> MachineConfig:
        return _find(self.machines, mid, "machine")

    def station(self, sid: str) -> Station:
        return _find(self.stations, sid, "station")

    def stations_of(self, kind: str) -> List[Station]:
        return [s for s in self.stations if s.kind == kind]

    def machines_with(self, capability: str) -> List[MachineConfig]:
        return [m for m in self.machines if capability in m.capabilities]

    @property
    def capabilities(self) -> List[str]:
        """Every process capability the cell's machines offer, sorted."""
        return sorted({c for m in self.machines for c in m.capabilities})

    @property
    def part_types(self) -> List[str]:
        """Every part type its feeders hold, sorted."""
        return sorted({s.part_type for st in self.stations_of("feeder") for s in st.slots})

    def feeder_slots(self, part_type: str) -> List[tuple]:
        """``(station, slot_index, slot)`` for every feeder slot that holds ``part_type``."""
        return [(st, i, s) for st in self.stations_of("feeder") for i, s in enumerate(st.slots)
                if s.part_type == part_type]


def _find(items: List[Any], ident: str, what: str) -> Any:
    for item in items:
        if item.id == ident:
            return item
    raise UnresolvedReference(f"no {what} '{ident}' in this cell",
                              hint="known: " + (", ".join(i.id for i in items) or "none"))


def _unique_ids(ctx: Context, path: PathKey, group: str, items: List[Any]) -> None:
    seen: Dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in seen:
            raise ctx.error(path + (group, i, "id"), f"duplicate id '{item.id}' (first used at {group}[{seen[item.id]}])",
                            "ids must be unique", cls=UnresolvedReference)
        seen[item.id] = i


def cell_from_document(doc: Document) -> CellConfig:
    """Validate a parsed document as a cell config."""
    cell = convert_dataclass(CellConfig, doc.data, (), Context(doc))
    object.__setattr__(cell, "source_file", doc.file)
    object.__setattr__(cell, "document", doc)
    return cell


def load_cell(path: str) -> CellConfig:
    """Load and validate a cell config file (YAML or JSON), or a cell named in the installed data."""
    if not os.path.exists(path) and looks_like_name(path):
        path = resolve_cell_path(path)
    return cell_from_document(load_file(path))
