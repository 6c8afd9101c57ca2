"""`import mtlc` against `mtlc train`, the embedded C API and PyTorch (CTest `python_module`).

usage: /usr/bin/python3 test_module.py MTLC_BINARY MODULE_DIR WORK_DIR [unittest args]

The module is imported from MODULE_DIR (build/python). Each check compares with an independent
path: the command-line trainer's log and checkpoint (byte for byte), the C API of a `mtlc build`
bundle loaded with ctypes (predictions bit for bit), and torch.nn modules built from the program's
layers (names and layouts).
"""
import ctypes
import json
import os
import re
import subprocess
import sys
import textwrap
import unittest

import numpy as np

MTLC, MODULE_DIR, WORK = sys.argv[1:4]
del sys.argv[1:4]
sys.path.insert(0, MODULE_DIR)
import mtlc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABULAR = os.path.join(ROOT, "examples", "tabular.mtl")


def work(name):
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, name)
    if os.path.exists(path):
        os.remove(path)
    return path


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def cli_train(*args):
    """`mtlc train` on one thread; its log and checkpoint paths are among args."""
    subprocess.run([MTLC, "train", "-q", "--threads", "1", *args], check=True, stdout=subprocess.DEVNULL)


def tabular_arrays(csv):
    """examples/tabular*.csv as the program binds it: features = columns 0..7, then the labels."""
    table = np.loadtxt(os.path.join(ROOT, "examples", csv), delimiter=",", skiprows=1)
    return {"features": table[:, :8].astype(np.float32), "cls": table[:, 8].astype(np.int64),
            "flag": table[:, 9].astype(np.int64), "target": table[:, 10]}


class TrainingMatchesTheCommandLine(unittest.TestCase):
    def test_program_data_steps_log_and_checkpoint(self):
        cli_log, cli_ckpt = work("cli_steps.jsonl"), work("cli_steps.safetensors")
        cli_train(TABULAR, "--steps", "40", "--log", cli_log, "--save", cli_ckpt)
        py_log, py_ckpt = work("py_steps.jsonl"), work("py_steps.safetensors")
        m = mtlc.compile(TABULAR, quiet=True, threads=2)
        history = m.fit(steps=40, log=py_log)
        m.save(py_ckpt)
        self.assertEqual(read_bytes(py_log), read_bytes(cli_log))
        self.assertEqual(read_bytes(py_ckpt), read_bytes(cli_ckpt))
        records = read_log(cli_log)
        self.assertEqual(history["steps"], [r for r in records if "step" in r])
        self.assertEqual(history["epochs"], [r for r in records if "step" not in r])
        self.assertEqual(len(history["steps"]), 40)
        self.assertEqual(m.steps, 40)

    def test_arrays_two_fits_equal_one_run_of_two_epochs(self):
        cli_log, cli_ckpt = work("cli_arrays.jsonl"), work("cli_arrays.safetensors")
        cli_train(TABULAR, "--epochs", "2", "--log", cli_log, "--save", cli_ckpt)
        train, test = tabular_arrays("tabular.csv"), tabular_arrays("tabular_test.csv")
        py_log, py_ckpt = work("py_arrays.jsonl"), work("py_arrays.safetensors")
        m = mtlc.compile(TABULAR, quiet=True)
        first = m.fit(train, test=test, epochs=1, log=py_log)
        second = m.fit(train, test=test, epochs=1, log=py_log)  # continues the run and its log
        m.save(py_ckpt)
        self.assertEqual(read_bytes(py_log), read_bytes(cli_log))
        self.assertEqual(read_bytes(py_ckpt), read_bytes(cli_ckpt))
        records = read_log(cli_log)
        self.assertEqual(first["steps"] + second["steps"], [r for r in records if "step" in r])
        self.assertEqual([e["epoch"] for e in first["epochs"] + second["epochs"]], [1, 2])

    def test_weighting_override_equals_the_program_saying_it(self):
        with open(TABULAR) as f:
            text = f.read().replace("  shuffle   false", "  shuffle   false\n  weighting uncertainty")
        logs, ckpts = [work("said.jsonl"), work("override.jsonl")], [work("said.safetensors"), work("override.safetensors")]
        said = mtlc.compile(source=text, base_dir=os.path.dirname(TABULAR), quiet=True)
        override = mtlc.compile(TABULAR, weighting="uncertainty", quiet=True)
        for m, log, ckpt in zip((said, override), logs, ckpts):
            m.fit(steps=20, log=log)
            m.save(ckpt)
        self.assertEqual(read_bytes(logs[0]), read_bytes(logs[1]))
        self.assertEqual(read_bytes(ckpts[0]), read_bytes(ckpts[1]))
        weights = [r for r in read_log(logs[1]) if "step" in r][-1]["tasks"]["cls"]["weight"]
        self.assertNotIn(weights, (0.5, 1.0))  # uncertainty moved ½·exp(−s) from ½; the fixed weight is 1


class PredictionsMatchTheCApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mtlc.compile(TABULAR, quiet=True)
        cls.model.fit(steps=60)
        cls.ckpt = work("predict.safetensors")
        cls.model.save(cls.ckpt)
        cls.test = tabular_arrays("tabular_test.csv")

    def test_predict_equals_the_bundle(self):
        out = os.path.join(WORK, "bundle")
        subprocess.run([MTLC, "build", TABULAR, "-o", out, "--mcpu", "native"], check=True, stdout=subprocess.DEVNULL)
        lib = os.path.join(out, "libtabular_py.so")
        subprocess.run(["cc", "-shared", "-o", lib, "-Wl,--whole-archive", os.path.join(out, "libtabular.a"),
                        "-Wl,--no-whole-archive", "-lm"], check=True)
        c = ctypes.CDLL(lib)  # the header's inline wrappers call mtlc_embed_* on the model's bundle
        c.mtlc_embed_create.restype = ctypes.c_void_p
        c.mtlc_embed_last_error.restype = ctypes.c_char_p
        bundle = ctypes.addressof(ctypes.c_char.in_dll(c, "mtlc_tabular_bundle"))
        ctx = ctypes.c_void_p(c.mtlc_embed_create(ctypes.c_void_p(bundle), None))
        self.assertEqual(c.mtlc_embed_load(ctx, self.ckpt.encode()), 0)
        x = np.ascontiguousarray(self.test["features"])
        n = x.shape[0]
        outs = {t: np.zeros((n, w), np.float32) for t, w in (("cls", 3), ("flag", 1), ("target", 1))}
        pointers = lambda arrays: (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])  # noqa: E731
        counts = lambda arrays: (ctypes.c_size_t * len(arrays))(*[a.size for a in arrays])  # noqa: E731
        heads = [outs[t] for t in ("cls", "flag", "target")]
        max_batch = 32  # TABULAR_MAX_BATCH: the program's batch
        for first in range(0, n, max_batch):
            rows = slice(first, first + max_batch)
            status = c.mtlc_embed_predict(ctx, ctypes.c_int64(len(x[rows])), pointers([x[rows]]), counts([x[rows]]),
                                          pointers([h[rows] for h in heads]), counts([h[rows] for h in heads]))
            self.assertEqual(status, 0, c.mtlc_embed_last_error(ctx))
        c.mtlc_embed_destroy(ctx)
        mine = self.model.predict({"features": x})
        for t in outs:
            self.assertEqual(mine[t].shape, outs[t].shape)
            self.assertTrue(np.array_equal(mine[t], outs[t]), f"task {t}: predictions differ from the C API's")

    def test_evaluate_equals_the_trainers_test_metrics(self):
        # The same 60 steps on the command line end with the test set evaluated at that point.
        cli_log = work("evaluate.jsonl")
        cli_train(TABULAR, "--steps", "60", "--log", cli_log)
        test_record = [r for r in read_log(cli_log) if "test" in r][-1]["test"]
        self.assertEqual(self.model.evaluate(self.test), test_record)

    def test_predict_reads_torch_tensors_and_batches_any_size(self):
        import torch
        x = self.test["features"][:101]
        whole = self.model.predict({"features": x})
        from_torch = self.model.predict({"features": torch.from_numpy(x)})
        parts = [self.model.predict({"features": x[i:i + 7]})["cls"] for i in range(0, 101, 7)]
        self.assertTrue(np.array_equal(whole["cls"], from_torch["cls"]))
        self.assertTrue(np.array_equal(whole["cls"], np.concatenate(parts)))
        as_float64 = self.model.predict({"features": x.astype(np.float64)})  # converted, a copy
        self.assertTrue(np.array_equal(whole["cls"], as_float64["cls"]))
        self.assertTrue(torch.from_numpy(whole["cls"]).data_ptr() == whole["cls"].ctypes.data)


class Errors(unittest.TestCase):
    def test_compile_error_carries_the_location(self):
        source = "model bad\ninput x : f32[3]\ntask t {\n  x -> dense(2) -> frobnicate\n  loss mse\n}\n"
        with self.assertRaises(mtlc.CompileError) as e:
            mtlc.compile(source=source)
        self.assertRegex(str(e.exception), r"<source>:4:\d+: error: .*frobnicate")
        self.assertIn("^", str(e.exception))
        path = work("bad.mtl")
        with open(path, "w") as f:
            f.write(source)
        with self.assertRaises(mtlc.CompileError) as e:
            mtlc.compile(path)
        self.assertRegex(str(e.exception), re.escape(path) + r":4:\d+: error:")
        self.assertTrue(issubclass(mtlc.CompileError, mtlc.Error))

    def test_shapes_dtypes_and_names(self):
        m = mtlc.compile(TABULAR, quiet=True)
        with self.assertRaises(ValueError) as e:
            m.predict({"features": np.zeros((5, 7), np.float32)})
        self.assertIn("input `features`", str(e.exception))
        self.assertIn("[N, 8]", str(e.exception))
        self.assertIn("[5, 7]", str(e.exception))
        with self.assertRaises(TypeError) as e:
            m.predict({"features": np.zeros((5, 8), np.complex64)})
        self.assertIn("input `features`", str(e.exception))
        self.assertIn("complex64", str(e.exception))
        with self.assertRaises(TypeError) as e:
            m.predict({"features": np.array([["a"] * 8])})
        self.assertIn("input `features`", str(e.exception))
        with self.assertRaises(ValueError) as e:
            m.predict({"features": np.zeros((5, 8), np.float32), "colour": np.zeros(5)})
        self.assertIn("`colour` is neither an input", str(e.exception))
        data = tabular_arrays("tabular_test.csv")
        data["cls"] = data["cls"][:-1]
        with self.assertRaises(ValueError) as e:
            m.fit(data, epochs=1)
        self.assertIn("task `cls`", str(e.exception))
        data = tabular_arrays("tabular_test.csv")
        data["cls"][3] = 7
        with self.assertRaises(ValueError) as e:
            m.evaluate(data)
        self.assertIn("sample 3", str(e.exception))
        self.assertIn("[0, 3)", str(e.exception))
        sd = m.state_dict()
        sd["trunk.0.weight"] = np.zeros((64, 9), np.float32)
        with self.assertRaises(ValueError) as e:
            m.load_state_dict(sd)
        self.assertIn("trunk.0.weight", str(e.exception))
        self.assertIn("[64, 8]", str(e.exception))
        self.assertIn("[64, 9]", str(e.exception))

    def test_weighting_override_is_checked_against_the_vocabulary(self):
        with self.assertRaises(ValueError) as e:
            mtlc.compile(TABULAR, weighting="dwaa")
        self.assertIn("unknown weighting `dwaa`", str(e.exception))
        self.assertIn("gradnorm", str(e.exception))  # the known names, from spec/Vocabulary.def
        with self.assertRaises(ValueError) as e:
            mtlc.compile(TABULAR, weighting="uniform", weighting_param=2.0)
        self.assertIn("takes no parameter", str(e.exception))
        self.assertIn("dwa: temperature", str(e.exception))
        with self.assertRaises(ValueError) as e:
            mtlc.compile(TABULAR, weighting="dwa", weighting_param=0.0)  # the temperature is > 0
        self.assertIn("temperature", str(e.exception))
        with self.assertRaises(ValueError):
            mtlc.compile(TABULAR, weighting_param=2.0)
        m = mtlc.compile(TABULAR, weighting="gradnorm", quiet=True)
        self.assertEqual({t: info["loss"] for t, info in m.tasks.items()},
                         {"cls": "cross_entropy", "flag": "bce", "target": "mse"})
        self.assertEqual(m.tasks["flag"]["metrics"], ["accuracy", "auc"])


class TorchRoundTrip(unittest.TestCase):
    def test_state_dict_through_torch_and_back(self):
        import torch
        from torch import nn
        m = mtlc.compile(TABULAR, quiet=True)
        m.fit(steps=30)
        x = tabular_arrays("tabular_test.csv")["features"]
        before = m.predict({"features": x})
        # The program's layers as PyTorch modules; names and layouts are the checkpoint's.
        net = nn.ModuleDict({
            "trunk": nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU()),
            "cls": nn.Sequential(nn.Linear(32, 3)),
            "flag": nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1)),
            "target": nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 1)),
        })
        sd = m.state_dict()
        shared = torch.from_numpy(sd["trunk.0.weight"])
        self.assertEqual(shared.data_ptr(), sd["trunk.0.weight"].ctypes.data)  # no copy
        net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
        with torch.no_grad():
            z = net["trunk"](torch.from_numpy(x))
            for t in ("cls", "flag", "target"):
                np.testing.assert_allclose(net[t](z).numpy(), before[t], rtol=1e-5, atol=1e-5)
        fresh = mtlc.compile(TABULAR, quiet=True, seed=99)
        fresh.load_state_dict(net.state_dict())  # torch tensors
        after = fresh.predict({"features": x})
        for t in before:
            self.assertTrue(np.array_equal(before[t], after[t]), f"task {t} changed in the round trip")
        for k, v in fresh.state_dict().items():
            self.assertTrue(np.array_equal(v, sd[k]), k)


# Ctrl-C once training runs (its log has a line): the trainer's handler must take it, not Python's.
INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    import mtlc
    m = mtlc.compile(sys.argv[2], quiet=True)
    log = sys.argv[3]
    def interrupt():
        while not os.path.exists(log) or os.path.getsize(log) == 0:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        m.fit(epochs=100000, log=log)
        print("not interrupted")
    except KeyboardInterrupt:
        m.predict({"features": [[0.0] * 8]})
        print("interrupted after", m.steps, "steps")
""")


class CtrlC(unittest.TestCase):
    def test_sigint_stops_between_steps(self):
        r = subprocess.run([sys.executable, "-c", INTERRUPTED, MODULE_DIR, TABULAR, work("interrupted.jsonl")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        words = r.stdout.split()
        self.assertEqual(words[:2], ["interrupted", "after"], r.stdout)
        self.assertGreater(int(words[2]), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
