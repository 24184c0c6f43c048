"""Pictures render off the physics: on a render-only client, or in a child process of their own."""

from __future__ import annotations

import os
import struct

import pytest

from anycell.cell import load_cell
from anycell.errors import ExecutionError, UnresolvedReference
from anycell.geometry import Pose
from anycell.sim.pictures import PictureProcess, Scene
from anycell.sim.world import SimWorld
from tests.paths import DEMO_CELL


def _png_size(path: str) -> tuple:
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def world():
    with SimWorld(load_cell(DEMO_CELL)) as w:
        w.add_part("u1.block", {"box": [0.04, 0.04, 0.03]}, 0.05, Pose(xyz=[0.5, 0.0, 0.3]), [0.9, 0.1, 0.1, 1.0])
        yield w


def test_a_picture_rendered_apart_is_the_picture_rendered_in_process(world, tmp_path) -> None:
    """Same scene, same pixels: the child process builds the cell from its file as the world did."""
    here = world.snapshot_later(str(tmp_path / "here.png"))()
    assert world.render_pictures_apart()
    render = world.snapshot_later(str(tmp_path / "apart.png"))
    world.step(50)                          # the world moves on; the picture shows the moment it was asked for
    apart = render()
    proc = world._pictures._proc            # type: ignore[union-attr]
    assert proc is not None and proc.pid != os.getpid() and proc.poll() is None
    assert _png_size(apart) == (480, 360)
    with open(here, "rb") as a, open(apart, "rb") as b:
        assert a.read() == b.read()
    world.close()
    assert proc.poll() is not None          # closing the world ends its picture process


def test_an_unknown_camera_is_refused_at_once_naming_the_cameras(world, tmp_path) -> None:
    assert world.render_pictures_apart()
    with pytest.raises(UnresolvedReference, match="overview"):
        world.snapshot_later(str(tmp_path / "x.png"), "ceiling")


def test_a_dead_picture_process_is_replaced_at_the_next_picture(world, tmp_path) -> None:
    assert world.render_pictures_apart()
    world.snapshot_later(str(tmp_path / "1.png"))()
    pictures = world._pictures
    assert isinstance(pictures, PictureProcess)
    first = pictures._proc
    assert first is not None
    first.kill()
    first.wait()
    assert _png_size(world.snapshot_later(str(tmp_path / "2.png"))()) == (480, 360)
    assert pictures._proc is not None and pictures._proc.pid != first.pid


def test_a_picture_process_that_dies_answering_is_an_error_with_its_exit_code(tmp_path) -> None:
    broken = tmp_path / "cell.yaml"
    broken.write_text("cell: [not, a, cell]\n")
    pictures = PictureProcess(load_cell(DEMO_CELL), str(broken))
    try:
        with pytest.raises(ExecutionError, match=r"picture process exited \(code 2\)"):
            pictures.render(Scene(), str(tmp_path / "x.png"), None, {})
    finally:
        pictures.close()


def test_a_picture_the_child_cannot_write_is_an_error_not_a_hang(tmp_path) -> None:
    cell = load_cell(DEMO_CELL)
    pictures = PictureProcess(cell, DEMO_CELL)
    try:
        with pytest.raises(ExecutionError, match="picture not rendered"):
            pictures.render(Scene(), str(tmp_path / "no" / "such" / "dir.png"), None, {})
        assert _png_size(pictures.render(Scene(), str(tmp_path / "ok.png"), "top", {})) == (480, 360)
    finally:
        pictures.close()


def test_a_cell_built_in_memory_keeps_pictures_in_process() -> None:
    cell = load_cell(DEMO_CELL)
    object.__setattr__(cell, "source_file", None)
    with SimWorld(cell) as w:
        assert w.render_pictures_apart() is False


def test_an_aborted_picture_fails_at_once_and_the_next_starts_a_new_process(world, tmp_path) -> None:
    """What a node shutting down does: the render in progress ends with an error, not after its timeout."""
    import threading

    assert world.render_pictures_apart()
    pictures = world._pictures
    assert isinstance(pictures, PictureProcess)
    world.snapshot_later(str(tmp_path / "1.png"))()       # the child is up
    render = world.snapshot_later(str(tmp_path / "2.png"))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["path"] = render()
        except ExecutionError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    pictures.abort()
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome          # a picture written just before the kill is fine too
    assert _png_size(world.snapshot_later(str(tmp_path / "3.png"))()) == (480, 360)
