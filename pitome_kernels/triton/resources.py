"""Compiles a recorded launch for a CUDA target without a GPU and reads what the binary
needs: registers per thread, spilled bytes, shared memory, warps, and the occupancy those
allow on the target."""

import contextlib
import io
import re
from typing import NamedTuple

import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


class Target(NamedTuple):
    """What an SM of one architecture offers a kernel."""

    arch: int
    shared_per_block: int  # bytes, the opt-in maximum of one block
    shared_per_sm: int
    registers_per_sm: int = 65536
    warps_per_sm: int = 64
    blocks_per_sm: int = 32


TARGETS = {
    80: Target(80, shared_per_block=163 * 1024, shared_per_sm=164 * 1024),
    90: Target(90, shared_per_block=227 * 1024, shared_per_sm=228 * 1024),
    100: Target(100, shared_per_block=227 * 1024, shared_per_sm=228 * 1024),
}
_RESERVED_SHARED = 1024  # per block, taken by the system on sm_80 and later


class Resources(NamedTuple):
    registers: int
    spill_bytes: int  # spill stores + spill loads, as ptxas reports them
    shared: int
    warps: int
    occupancy: float  # resident warps / the SM's maximum

    def problems(self, target: Target):
        """Why this binary fails the check on ``target`` (an empty list when it passes)."""
        found = []
        if self.spill_bytes:
            found.append(f"spills {self.spill_bytes} bytes")
        if self.shared > target.shared_per_block:
            found.append(f"shared memory {self.shared} B > {target.shared_per_block} B")
        if self.occupancy == 0:
            found.append("cannot be resident")
        return found


def occupancy(target: Target, registers: int, shared: int, warps: int) -> float:
    """Resident warps per SM over the SM's maximum (registers allocated per warp in
    units of 256, shared memory plus the per-block reserve)."""
    per_warp = -(-registers * 32 // 256) * 256
    blocks = min(target.blocks_per_sm, target.warps_per_sm // warps,
                 target.registers_per_sm // max(per_warp * warps, 1))
    if shared:
        blocks = min(blocks, target.shared_per_sm // (shared + _RESERVED_SHARED))
    return blocks * warps / target.warps_per_sm


def compile_launch(launch, arch: int):
    """``(CompiledKernel, ptxas log)`` of a recorded launch for sm_``arch`` (compiled anew,
    not taken from Triton's cache, so that ptxas reports on it)."""
    source = ASTSource(launch.kernel, launch.signature, launch.constexprs, launch.attrs)
    log = io.StringIO()
    saved = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, True
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=launch.options)
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = saved
    return compiled, log.getvalue()


def resources(compiled, ptxas_log: str, arch: int) -> Resources:
    """Registers and spills from ptxas' report, shared memory and warps from Triton's
    metadata. (A stack frame alone is no spill: IEEE division and square root call a
    slow path that keeps its frame there.)"""
    used = re.search(r"Used (\d+) registers", ptxas_log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", ptxas_log)
    if used is None or spills is None:
        raise RuntimeError(f"no register report in ptxas' log:\n{ptxas_log}")
    registers = int(used.group(1))
    spill = int(spills.group(1)) + int(spills.group(2))
    shared = int(compiled.metadata.shared)
    warps = int(compiled.metadata.num_warps)
    return Resources(registers, spill, shared, warps, occupancy(TARGETS[arch], registers, shared, warps))
