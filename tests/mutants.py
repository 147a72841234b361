"""Mutation testing: planted bugs that the suite must catch.

Each :class:`Mutant` is one small edit of a library file -- a box edge moved,
a mask dropped, the wrong row's box or weight taken -- that breaks one branch
of a kernel or of the Python layers. The harness copies the tree (never the
working tree itself: a temporary directory), applies the mutants one at a time
to the copy and runs, in a fresh process that imports the copy's package,
the few test ids the mutant names: every one of them must fail. A mutant that
none of its tests kills, a test that does not kill its mutant, or an edit that
no longer applies fails the run. Before the mutants, the same tests must pass
on the unmutated copy.

The Triton kernel runs under the interpreter (``TRITON_INTERPRET=1``) on CPU
tensors. Python mutants reuse the built extension (``mixup_fused/_C*.so`` is
copied); C++ mutants need a rebuild of the copy (``setup.py build_ext
--inplace``, minutes each on a small machine), so they run only with
``--cpp`` and not in CI.

    .venv/bin/python tests/mutants.py            # the Python and Triton mutants (CI: tests/test_mutants.py)
    .venv/bin/python tests/mutants.py --cpp      # the C++ mutants only
    .venv/bin/python tests/mutants.py --list     # the mutants and the tests that kill them
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL = "mixup_fused/triton/kernel.py"
LAUNCHER = "mixup_fused/triton/launcher.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str  # the branch it breaks
    path: str  # relative to the repository root
    old: str  # exact text, found once in the file
    new: str
    tests: tuple[str, ...]  # pytest ids that must all fail
    cpp: bool = False  # the extension must be rebuilt


def _t(*ids: str) -> tuple[str, ...]:
    return tuple(ids)


MIX = "tests/test_mix.py::"
BWD = "tests/test_backward.py::"

MUTANTS = [
    # --- the Triton kernel ---------------------------------------------------
    Mutant(
        "box_bottom_edge",
        "box edges: the row y1 (outside the half-open box) counted inside",
        KERNEL,
        "inside = (r_hw >= h0) & (r_hw < h1)",
        "inside = (r_hw >= h0) & (r_hw <= h1)",
        _t(MIX + "test_cutmix_matches_reference[cpu-triton-7x3x13x17-torch.float32-nchw-int]"),
    ),
    Mutant(
        "box_left_edge",
        "box edges: the column x0 left out of the box",
        KERNEL,
        "(r_hw < h1) & (w >= w0) & (w < w1)",
        "(r_hw < h1) & (w > w0) & (w < w1)",
        _t(MIX + "test_cutmix_matches_reference[cpu-triton-7x3x13x17-torch.float32-nhwc-int]"),
    ),
    Mutant(
        "no_box_partner_not_read",
        "NO_BOX: out of place, a blended row reads its partner only inside its (empty) box",
        KERNEL,
        "b = tl.load(xp_ptr + offs, mask=mask & (mix_part | in_part), other=0)",
        "b = tl.load(xp_ptr + offs, mask=mask & in_part, other=0)",
        _t(MIX + "test_cutmix_matches_reference[cpu-triton-7x3x13x17-torch.float32-nchw-soft]"),
    ),
    Mutant(
        "inplace_cut_row_unread_for_blended_partner",
        "in place: a cut row is not read where its blended partner needs it (mix_p dropped from the load mask)",
        KERNEL,
        "mask=mask & (in_p | mix_i | mix_p), other=0)",
        "mask=mask & (in_p | mix_i), other=0)",
        _t(MIX + "test_inplace_equals_out_of_place[cpu-triton-flip-torch.float32-cutmix-contiguous-7x3x5x6]"),
    ),
    Mutant(
        "inplace_pair_skipped_when_one_row_is_kept",
        "lam == 1: in place, a pair is skipped when either row (not both) is blended with weight 1",
        KERNEL,
        "mask = mask & ~(one_i & one_p)",
        "mask = mask & ~(one_i | one_p)",
        _t(MIX + "test_inplace_keeps_rows_blended_with_one[cpu-triton-torch.float32-mixup]"),
    ),
    Mutant(
        "inplace_kept_row_written",
        "lam == 1: in place, a row blended with weight 1 is written (1 * a + 0 * b) instead of kept",
        KERNEL,
        "mask=mask & (in_i | mix_i) & ~keep_i)",
        "mask=mask & (in_i | mix_i))",
        _t(MIX + "test_inplace_keeps_rows_blended_with_one[cpu-triton-torch.float32-cutmix]"),
    ),
    Mutant(
        "partner_weight_from_float32_lam",
        "weights: 1 - lam computed from the float32 lam (two roundings) instead of the lam given",
        KERNEL,
        "rest_w = (1.0 - tl.load(lam_ptr + wi)).to(acc_ty)",
        "rest_w = 1.0 - tl.load(lam_ptr + wi).to(acc_ty)",
        _t(MIX + "test_float_lam_weights_like_timm_and_torchvision[cpu-triton-torch.float32]"),
    ),
    Mutant(
        "backward_partner_box_of_self",
        "backward: the partner term uses row k's own NO_BOX flag instead of its partner's (issue 16)",
        KERNEL,
        "other = tl.where(mix_part, rest_w * b, tl.where(in_part, b, 0.0))",
        "other = tl.where(mix_self, rest_w * b, tl.where(in_part, b, 0.0))",
        _t(BWD + "test_backward_matches_the_formula[cpu-triton-random-torch.float32-cutmix-contiguous]"),
    ),
    Mutant(
        "backward_partner_weight_of_self",
        "backward: the partner term weighted by 1 - lam[k] instead of 1 - lam[q]",
        KERNEL,
        "            wi = p\n",
        "            wi = i\n",
        _t(BWD + "test_backward_matches_the_formula[cpu-triton-random-torch.float32-mixup-contiguous]"),
    ),
    Mutant(
        "targets_partner_class",
        "targets: the partner's class id read from the row itself",
        KERNEL,
        "yb = tl.where(k == tp, on_value, off_value)",
        "yb = tl.where(k == ti, on_value, off_value)",
        _t(MIX + "test_label_smoothing_values[cpu-triton-0.0]"),
    ),
    Mutant(
        "soft_targets_partner_row",
        "soft targets: the partner's row read from the row itself",
        KERNEL,
        "yb = tl.load(soft_ptr + p.to(tl.int64) * num_classes + k, mask=kmask, other=0)",
        "yb = tl.load(soft_ptr + i.to(tl.int64) * num_classes + k, mask=kmask, other=0)",
        _t(MIX + "test_soft_targets[cpu-triton-contiguous]"),
    ),
    Mutant(
        "soft_targets_unsmoothed_partner",
        "smoothing: the partner's soft row scaled by 1 - eps without the eps / K spread",
        KERNEL,
        "yb = yb * keep + spread",
        "yb = yb * keep",
        _t(MIX + "test_soft_targets[cpu-triton-contiguous]"),
    ),
    Mutant(
        "uint8_std_of_channel_0",
        "uint8 normalisation: every channel divided by channel 0's std",
        KERNEL,
        "std = tl.load(std_ptr + c, mask=mask, other=1.0)",
        "std = tl.load(std_ptr + c * 0, mask=mask, other=1.0)",
        _t("tests/test_uint8.py::test_uint8_normalize[cpu-triton-None-mixup-nchw-to-None]"),
    ),
    Mutant(
        "channels_last_position",
        "layout: channels_last pixels counted in steps of H instead of C",
        KERNEL,
        "                s = offs // C\n",
        "                s = offs // H\n",
        _t(MIX + "test_cutmix_matches_reference[cpu-triton-7x3x13x17-torch.float32-nhwc-soft]"),
    ),
    Mutant(
        "float64_in_float32",
        "compute dtype: float64 mixed in float32",
        KERNEL,
        "        acc_ty = tl.float64\n",
        "        acc_ty = tl.float32\n",
        _t(MIX + "test_mixup_matches_reference[cpu-triton-3x11-torch.float64-lam=tensor-eps=0.0-int-K=10]"),
    ),
    # --- the Python layers ---------------------------------------------------
    Mutant(
        "on_value_without_spread",
        "smoothing (launcher): the on value 1 - eps, without eps / K",
        LAUNCHER,
        "on_value = 1.0 - eps + off_value",
        "on_value = 1.0 - eps",
        _t(MIX + "test_label_smoothing_values[cpu-triton-0.1]"),
    ),
    Mutant(
        "backward_inverse_is_perm",
        "backward (launcher): perm taken for its inverse",
        LAUNCHER,
        "inv[perm] = torch.arange(perm.numel(), device=perm.device)",
        "inv.copy_(perm)",
        _t(BWD + "test_backward_matches_the_formula[cpu-triton-cycle-torch.float32-mixup-contiguous]"),
    ),
    Mutant(
        "float_lam_rounded_to_float32",
        "weights (functional): a Python-float lam rounded to float32 before 1 - lam",
        "mixup_fused/functional.py",
        "return torch.full((B,), lam, dtype=torch.float64, device=x.device)",
        "return torch.full((B,), lam, dtype=torch.float32, device=x.device)",
        _t(MIX + "test_float_lam_weights_like_timm_and_torchvision[cpu-cpp-torch.float32]"),
    ),
    Mutant(
        "reference_partner_weight",
        "weights (reference): 1 - lam from lam rounded to the compute dtype",
        "mixup_fused/reference.py",
        "return lam.to(dtype), (1.0 - lam.double()).to(dtype)",
        "return lam.to(dtype), 1.0 - lam.to(dtype)",
        _t(MIX + "test_float_lam_weights_like_timm_and_torchvision[cpu-reference-torch.float32]"),
    ),
    Mutant(
        "reference_keeps_cut_rows",
        "in place (reference): cut rows with lam == 1 kept as if blended",
        "mixup_fused/reference.py",
        "    if boxes is not None:\n        one = one & mixup_rows(boxes)\n",
        "",
        _t(MIX + "test_inplace_keeps_rows_blended_with_one[cpu-reference-torch.float32-cutmix]"),
    ),
    Mutant(
        "normalised_gradient_not_divided_by_std",
        "backward (autograd): the gradient through mean/std not divided by std",
        "mixup_fused/_registration.py",
        "return (grad / std.to(wide).view((1, -1) + (1,) * (grad.dim() - 2))).to(x_dtype)",
        "return grad.to(x_dtype)",
        _t("tests/test_registration.py::test_gradient_equals_reference_autograd[cpu-cpp-normalize-torch.float32]"),
    ),
    Mutant(
        "output_always_contiguous",
        "layout: the output of a channels_last x allocated contiguous",
        "mixup_fused/_layout.py",
        "    if not is_channels_last(x):\n        return torch.empty(x.shape, dtype=dtype, device=x.device)",
        "    if True:\n        return torch.empty(x.shape, dtype=dtype, device=x.device)",
        _t(MIX + "test_layouts[cpu-triton-channels_last-torch.float32-mixup]"),
    ),
    Mutant(
        "cutmix_lam_off_by_one_pixel",
        "targets (timm's sampler): lam corrected with one pixel too many in the image",
        "mixup_fused/sampling/timm.py",
        "return 1.0 - volume / float(math.prod(sizes))",
        "return 1.0 - volume / float(math.prod(sizes) + 1)",
        _t("tests/test_properties.py::test_cutmix_label_weights_equal_box_fractions[reference]"),
    ),
    Mutant(
        "blended_rows_left_unmixed",
        "NO_BOX (sampler): rows drawn for mixup get an empty box (unchanged) instead of NO_BOX",
        "mixup_fused/sampling/params.py",
        "xp.where((lam_n != 1.0)[:, None], -1, 0)",
        "xp.where((lam_n != 1.0)[:, None], 0, 0)",
        # (With the extension the numpy sampler builds its rows in C; the numpy
        # version is held equal to it by test_host_rows.)
        _t(
            "tests/test_sampling.py::test_sampler_statistics[torch]",
            "tests/test_host_rows.py::test_native_rows_equal_numpy_rows[flip-64-sizes0-elem-switch]",
        ),  # fmt: skip
    ),
    Mutant(
        "box_past_the_bottom_accepted",
        "bad input: a box reaching one row past the image passes the value checks",
        "mixup_fused/_checks.py",
        "(b[:, 2 * d + 1] <= size)",
        "(b[:, 2 * d + 1] <= size + (d == 0))",
        _t("tests/test_errors.py::test_bad_input_out_of_place[reference-boxes_below_bottom]"),
    ),
    # --- the C++ kernels (rebuild: --cpp only) -------------------------------
    Mutant(
        "cpp_backward_partner_box_of_self",
        "backward (C++): the partner term uses row k's own NO_BOX flag instead of its partner's",
        "csrc/mix_ops.cpp",
        "pl.part_mix = !cutmix || is_no_box(boxes[q]);",
        "pl.part_mix = !cutmix || is_no_box(boxes[k]);",
        _t(BWD + "test_backward_matches_the_formula[cpu-cpp-random-torch.float32-cutmix-contiguous]"),
        cpp=True,
    ),
    Mutant(
        "cpp_backward_last_segment_unwritten",
        "backward (C++): the last segment of a line (right of both boxes) never written: NaN poison",
        "csrc/loops.h",
        "      for (int q = 0; q < 5; ++q) {\n        const int64_t j0 = sg.cut[q], j1 = sg.cut[q + 1];\n"
        "        if (j0 >= j1) continue;\n        const bool in_s",
        "      for (int q = 0; q < 4; ++q) {\n        const int64_t j0 = sg.cut[q], j1 = sg.cut[q + 1];\n"
        "        if (j0 >= j1) continue;\n        const bool in_s",
        _t(BWD + "test_cpp_backward_op_writes_every_element[torch.float32-cutmix]"),
        cpp=True,
    ),
]


# ----------------------------------------------------------------------------
# The copy and the child runs
# ----------------------------------------------------------------------------

# Run in the child: drop the editable install's import hook (it maps
# mixup_fused to the working tree), put the copy first, run pytest and report
# the ids that failed and the package that was imported.
# The interpreter that runs a mutant's tests. Importing torch, triton, numpy,
# scipy, hypothesis and pytest takes about 5 s, more than most mutants' tests:
# a server per copy imports them once (never the package under test) and
# forks a child per run, which imports the copy's package as a fresh
# interpreter would and runs its tests with pytest. Requests and answers are
# JSON lines on the server's stdin / stdout; a child writes its output to a file.
SERVER = r"""
import json, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
tree = sys.argv[1]
sys.path.insert(0, tree)
for name in ("numpy", "torch", "triton", "scipy.stats", "hypothesis", "pytest"):
    try:
        __import__(name)
    except ImportError:
        pass
assert not any(m == "mixup_fused" or m.startswith("mixup_fused.") for m in sys.modules), "imported the package early"
answers = os.fdopen(os.dup(1), "w")
for request in sys.stdin:
    job = json.loads(request)
    pid = os.fork()
    if pid == 0:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        code = 3
        try:
            import pytest

            failed, skipped = [], []

            class Recorder:
                def pytest_runtest_logreport(self, report):
                    if report.failed:
                        failed.append(report.nodeid)
                    elif report.skipped:
                        skipped.append(report.nodeid)

            args = ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *job["tests"]]
            code = int(pytest.main(args, plugins=[Recorder()]))
            import mixup_fused

            print("MUTANT_RESULT " + json.dumps({"code": code, "failed": failed, "skipped": skipped,
                                                 "package": mixup_fused.__file__}))
        except BaseException as err:  # reported as a missing result
            print(f"the test run raised {err!r}")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps({"status": status}) + "\n")
    answers.flush()
"""

COPIED = ("mixup_fused", "tests", "bench", "pyproject.toml")
COPIED_CPP = ("csrc", "setup.py")


def _ignore(_dir, names):
    return [n for n in names if n in ("__pycache__", ".pytest_cache", ".hypothesis") or n.endswith(".pyc")]


def make_copy(dest: str, cpp: bool = False) -> str:
    """The tree's package, tests and benchmark helpers (and, for C++ mutants,
    its sources) under ``dest``: the built extension comes along with the package."""
    for name in COPIED + (COPIED_CPP if cpp else ()):
        src = os.path.join(ROOT, name)
        dst = os.path.join(dest, name)
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=_ignore)
        else:
            shutil.copy2(src, dst)
    return dest


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant of the same size and mtime must not reuse a stale .pyc
    env["TRITON_INTERPRET"] = "1"  # the Triton kernel on CPU tensors, on any machine
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


class TestServer:
    """A :data:`SERVER` for one copy of the tree, started on the first run."""

    def __init__(self, tree: str):
        self.tree = tree
        self.proc = None
        self.runs = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, self.tree],
            cwd=self.tree,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a timed-out run is killed with its child
        )

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc = None

    def _kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def run(self, tests, timeout: float = 600) -> dict:
        """Run pytest ids in a fresh child that imports the copy's package."""
        if self.proc is None:
            self._start()
        self.runs += 1
        log = os.path.join(self.tree, f".mutant-run-{self.runs}.log")
        self.proc.stdin.write(json.dumps({"tests": list(tests), "log": log}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        answer = self.proc.stdout.readline() if ready else ""
        if not answer:
            self._kill()
        output = ""
        if os.path.exists(log):
            with open(log) as f:
                output = f.read()
            os.remove(log)
        tail = output[-3000:] if answer else output[-3000:] + f"\n(no answer from the test server in {timeout} s)"
        line = next((ln for ln in output.splitlines() if ln.startswith("MUTANT_RESULT ")), None)
        if line is None:
            return {"code": -1, "failed": [], "skipped": [], "package": None, "output": tail}
        res = json.loads(line[len("MUTANT_RESULT ") :])
        res["output"] = tail
        package = res["package"] or ""
        if not (package.startswith(os.path.realpath(self.tree)) or package.startswith(self.tree)):
            res["code"] = -2  # the working tree's package was imported, not the copy's
        return res


def apply(tree: str, m: Mutant) -> str:
    """Apply ``m`` in ``tree``; returns the original text of the file."""
    path = os.path.join(tree, m.path)
    with open(path) as f:
        text = f.read()
    if text.count(m.old) != 1:
        raise ValueError(f"mutant {m.name}: the text to replace occurs {text.count(m.old)} times in {m.path}")
    with open(path, "w") as f:
        f.write(text.replace(m.old, m.new))
    return text


def restore(tree: str, m: Mutant, text: str) -> None:
    with open(os.path.join(tree, m.path), "w") as f:
        f.write(text)


def rebuild(tree: str) -> None:
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError("the extension did not build:\n" + (proc.stdout + proc.stderr)[-3000:])


def run_mutant(server: TestServer, m: Mutant) -> dict:
    start = time.monotonic()
    tree = server.tree
    text = apply(tree, m)
    try:
        if m.cpp:
            rebuild(tree)  # (the server never loads the extension: its children load the new build)
        res = server.run(m.tests)
    finally:
        restore(tree, m, text)
    missed = [t for t in m.tests if t not in res["failed"]]
    if res["skipped"]:
        status = "SKIPPED"  # a test that cannot run here cannot kill anything
    elif res["code"] == 1 and not missed:
        status = "killed"
    elif res["code"] == 0:
        status = "SURVIVED"
    elif res["code"] == 1:
        status = "PARTLY"  # some listed test does not kill it
    else:
        status = f"ERROR({res['code']})"
    return {
        "name": m.name,
        "what": m.what,
        "status": status,
        "killed_by": [t for t in m.tests if t in res["failed"]],
        "not_killing": missed,
        "seconds": round(time.monotonic() - start, 1),
        "output": res["output"] if status != "killed" else "",
    }


def run(mutants, jobs: int = 2) -> dict:
    """The baseline (every named test passes on the unmutated copy), then
    each mutant in its own copy, ``jobs`` at a time."""
    start = time.monotonic()
    cpp = any(m.cpp for m in mutants)
    with tempfile.TemporaryDirectory(prefix="mixup_mutants_") as tmp:
        trees = [make_copy(os.path.join(tmp, f"tree{k}"), cpp) for k in range(max(1, jobs))]
        if cpp:
            for tree in trees:
                rebuild(tree)  # the copy's own build, so that each mutant rebuilds only what it touches
        servers = [TestServer(tree) for tree in trees]
        try:
            tests = sorted({t for m in mutants for t in m.tests})
            base = servers[0].run(tests)
            if base["code"] != 0 or base["skipped"]:
                return {"baseline": "FAILED", "output": base["output"], "results": [], "seconds": 0.0}
            queue = list(mutants)
            results = []

            def worker(server):
                out = []
                while queue:
                    try:
                        m = queue.pop(0)
                    except IndexError:
                        break
                    out.append(run_mutant(server, m))
                return out

            with ThreadPoolExecutor(max_workers=len(servers)) as pool:
                for part in pool.map(worker, servers):
                    results.extend(part)
        finally:
            for server in servers:
                if server.proc is not None:
                    server._kill()
    order = {m.name: k for k, m in enumerate(mutants)}
    results.sort(key=lambda r: order[r["name"]])
    return {"baseline": "passed", "results": results, "seconds": round(time.monotonic() - start, 1)}


def report(summary: dict) -> str:
    lines = [f"baseline: {summary['baseline']}; {len(summary['results'])} mutants in {summary['seconds']} s"]
    for r in summary["results"]:
        lines.append(f"{r['status']:>9}  {r['name']}  ({r['what']}; {r['seconds']} s)")
        for t in r["killed_by"]:
            lines.append(f"           killed by {t}")
        for t in r["not_killing"]:
            lines.append(f"           NOT killed by {t}")
        if r["output"]:
            lines.append("           " + r["output"][-1500:].replace("\n", "\n           "))
    if summary["baseline"] != "passed":
        lines.append(summary["output"])
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp", action="store_true", help="run the C++ mutants (each rebuilds the extension)")
    ap.add_argument("--only", nargs="*", help="run only these mutants")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if m.cpp == args.cpp and (not args.only or m.name in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what}\n    {m.path}\n    " + "\n    ".join(m.tests))
        return 0
    summary = run(chosen, jobs=1 if args.cpp else args.jobs)
    print(report(summary))
    ok = summary["baseline"] == "passed" and all(r["status"] == "killed" for r in summary["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
