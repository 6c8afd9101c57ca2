// `import mtlc`: the module's Python face (docs/python.md). Model.h does the work.
#include "Model.h"

#include "spec/Error.h"
#include "spec/Vocabulary.h"

#include <pybind11/stl.h>

namespace py = pybind11;
using mtlc::python::Model;

namespace {

// A path argument: str or os.PathLike.
std::string pathOf(const py::object& p) { return py::str(py::module_::import("os").attr("fspath")(p)); }

std::optional<std::string> optionalPath(const py::object& p) {
  if (p.is_none()) return std::nullopt;
  return pathOf(p);
}

py::dict inputsOf(const Model& m) {
  py::dict d;
  for (const auto& in : m.spec().inputs) d[py::str(in.name)] = py::tuple(py::cast(in.shape));
  return d;
}

// {task: {"loss": ..., "outputs": width, "metrics": [...]}}
py::dict tasksOf(const Model& m) {
  py::dict d;
  for (const auto& t : m.spec().tasks) {
    py::dict info;
    info["loss"] = mtlc::vocab::name(t.loss);
    info["outputs"] = t.outWidth;
    py::list ms;
    for (auto metric : t.metrics) ms.append(mtlc::vocab::name(metric));
    info["metrics"] = ms;
    info["weight"] = t.weight;
    d[py::str(t.name)] = info;
  }
  return d;
}

}  // namespace

PYBIND11_MODULE(mtlc, m) {
  m.doc() = "mtlc: compile multi-task .mtl programs to native code, train and predict from Python";
  static py::exception<mtlc::rt::Error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<mtlc::python::CompileError> compileError(m, "CompileError", error.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mtlc::python::CompileError& e) {
      compileError(e.what());
    } catch (const mtlc::rt::Error& e) {
      error(e.what());
    }
  });

  m.def(
      "compile",
      [](const py::object& path, const std::optional<std::string>& source, const py::object& baseDir, int threads,
         std::optional<uint64_t> seed, std::optional<std::string> weighting, std::optional<double> weightingParam,
         bool quiet, bool optimize) {
        mtlc::python::CompileSettings s;
        s.threads = threads;
        s.seed = seed;
        s.weighting = weighting.value_or("");
        s.weightingParam = weightingParam;
        s.quiet = quiet;
        s.optimize = optimize;
        return std::make_unique<Model>(optionalPath(path), source, pathOf(baseDir), s);
      },
      py::arg("path") = py::none(), py::kw_only(), py::arg("source") = py::none(), py::arg("base_dir") = ".",
      py::arg("threads") = 0, py::arg("seed") = py::none(), py::arg("weighting") = py::none(),
      py::arg("weighting_param") = py::none(), py::arg("quiet") = false, py::arg("optimize") = true,
      "Compiles a .mtl program (a path, or its text as source=) to native code. Raises CompileError "
      "with the diagnostics (file:line:col) when it has errors.");

  py::class_<Model>(m, "Model", "A compiled program, its parameters and its training state.")
      .def(
          "fit",
          [](Model& self, const py::object& data, std::optional<int64_t> epochs, std::optional<int64_t> steps,
             const py::object& test, std::optional<uint64_t> seed, std::optional<int> threads,
             const py::object& log, std::optional<bool> quiet) {
            mtlc::python::FitSettings s;
            s.epochs = epochs;
            s.steps = steps;
            s.seed = seed;
            s.threads = threads;
            s.quiet = quiet;
            if (!log.is_none()) s.logPath = pathOf(log);
            return self.fit(data, test, s);
          },
          py::arg("data") = py::none(), py::kw_only(), py::arg("epochs") = py::none(), py::arg("steps") = py::none(),
          py::arg("test") = py::none(), py::arg("seed") = py::none(), py::arg("threads") = py::none(),
          py::arg("log") = py::none(), py::arg("quiet") = py::none(),
          "Trains on `data` ({input or task: array}) or the program's own data; returns the log's records "
          "{'steps': [...], 'epochs': [...]}. Ctrl-C stops after the step in progress (KeyboardInterrupt; the "
          "training so far is kept).")
      .def("predict", &Model::predict, py::arg("inputs"), "{task: head outputs [N, width]} (eval mode)")
      .def("evaluate", &Model::evaluate, py::arg("data"), "{task: {'loss': ..., metric: ...}}")
      .def("state_dict", &Model::stateDict, "{name: array}: PyTorch's names and layouts")
      .def("load_state_dict", &Model::loadStateDict, py::arg("state_dict"))
      .def("save", [](const Model& self, const py::object& path) { self.save(pathOf(path)); }, py::arg("path"))
      .def("load", [](Model& self, const py::object& path) { self.load(pathOf(path)); }, py::arg("path"))
      .def_property_readonly("name", [](const Model& self) { return self.spec().name; })
      .def_property_readonly("inputs", &inputsOf, "{input: per-sample shape}")
      .def_property_readonly("tasks", &tasksOf, "{task: {'loss', 'outputs', 'metrics', 'weight'}}")
      .def_property_readonly("steps", &Model::steps, "optimizer steps trained")
      .def("__repr__", &Model::summary);
}
