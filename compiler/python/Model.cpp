#include "Model.h"

#include "Arrays.h"
#include "PyStdout.h"

#include "driver/NonFiniteLocator.h"
#include "runtime/io/Checkpoint.h"
#include "runtime/parallel/FloatMode.h"
#include "runtime/train/Init.h"
#include "runtime/train/Report.h"
#include "spec/Error.h"
#include "spec/Vocabulary.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace fs = std::filesystem;

namespace mtlc::python {

namespace {

// A JSON value (log records, metrics) as Python objects, keys in order, as json.loads makes them
// of its text (a non-finite number, which the text writes as null, is None).
py::object toPython(const nlohmann::ordered_json& j) {
  using Type = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case Type::object: {
      py::dict d;
      for (const auto& [key, value] : j.items()) d[py::str(key)] = toPython(value);
      return d;
    }
    case Type::array: {
      py::list l;
      for (const auto& value : j) l.append(toPython(value));
      return l;
    }
    case Type::string: return py::str(j.get_ref<const std::string&>());
    case Type::boolean: return py::bool_(j.get<bool>());
    case Type::number_integer: return py::int_(j.get<int64_t>());
    case Type::number_unsigned: return py::int_(j.get<uint64_t>());
    case Type::number_float: {
      const double v = j.get<double>();
      return std::isfinite(v) ? py::object(py::float_(v)) : py::none();
    }
    default: return py::none();
  }
}

// A private folder for the trainer's checkpoint, removed with the model.
std::string makeStateDir() {
  std::string pattern = (fs::temp_directory_path() / "mtlc-python-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot create a temporary folder in " + pattern);
  return pattern;
}

}  // namespace

Model::Model(const std::optional<std::string>& path, const std::optional<std::string>& source,
             const std::string& baseDir, const CompileSettings& settings)
    : settings_(settings) {
  if (path.has_value() == source.has_value())
    throw py::type_error("compile: give the program's path or its text as source=, one of them");
  {
    py::gil_scoped_release nogil;
    checked_ = path ? driver::checkFile(*path)
                    : driver::checkText((fs::path(baseDir) / "<source>").string(), "<source>", *source);
  }
  if (!checked_.model) {
    std::ostringstream diagnostics;
    checked_.diags->render(diagnostics, /*colour=*/false);
    throw CompileError(diagnostics.str());
  }
  applyWeighting();
  passes::PassSettings passes;
  passes.optimize = settings.optimize;
  {
    py::gil_scoped_release nogil;
    compiled_ = driver::compileProgram(checked_, passes, /*keepLlvmText=*/false, nullptr, settings.threads);
  }
  compiled_.spec.locateNonFinite = driver::makeNonFiniteLocator(compiled_.lowered.module);
  params_.resize(spec().paramCount);
  rt::initParams(spec(), settings.seed.value_or(spec().train.seed), params_.data());
  stateDir_ = makeStateDir();
  statePath_ = (fs::path(stateDir_) / "state.safetensors").string();
}

Model::~Model() {
  std::error_code ignored;
  fs::remove_all(stateDir_, ignored);
}

// compile(weighting=...): the program's `weighting` replaced before lowering, so that the entry
// points the strategy needs (task_grads, rep_grads) are generated. The names, the one argument a
// strategy may take, its default and range are the vocabulary's (spec/Vocabulary.def).
void Model::applyWeighting() {
  if (settings_.weighting.empty()) {
    if (settings_.weightingParam) throw py::value_error("compile: weighting_param= needs weighting=");
    return;
  }
  const std::string& w = settings_.weighting;
  std::vector<std::string> names, withArg;
  for (const vocab::Entry& e : vocab::weightings()) {
    names.push_back(e.name);
    if (e.args[0].name) withArg.push_back(fmt::format("{}: {}", e.name, e.args[0].name));
  }
  rt::WeightingKind kind{};
  if (!vocab::parse(w.c_str(), kind))
    throw py::value_error(fmt::format("compile: unknown weighting `{}` (known: {})", w, fmt::join(names, ", ")));
  const vocab::Arg& arg = vocab::row(kind).args[0];
  if (settings_.weightingParam && !arg.name)
    throw py::value_error(
        fmt::format("compile: weighting `{}` takes no parameter ({})", w, fmt::join(withArg, ", ")));
  const double value = settings_.weightingParam.value_or(arg.name ? arg.def : 0.0);
  if (arg.name && !((arg.loOpen ? value > arg.lo : value >= arg.lo) && (arg.hiOpen ? value < arg.hi : value <= arg.hi)))
    throw py::value_error(fmt::format("compile: weighting `{}`: {} {} is outside {}{}, {}{}", w, arg.name, value,
                                      arg.loOpen ? "(" : "[", arg.lo, arg.hi, arg.hiOpen ? ")" : "]"));
  rt::TrainSpec& train = checked_.model->train;
  train.weighting = kind;
  train.weightingParam = value;
  train.weightingArgs.clear();  // the first argument as given, the others at their defaults
  const vocab::Entry& row = vocab::row(kind);
  for (int i = 0; i < vocab::kMaxArgs && row.args[i].name; ++i) train.weightingArgs.push_back(i == 0 ? value : row.args[i].def);
  train.repGrad = kind == rt::WeightingKind::Mgda;
  for (int i = 0; i < vocab::kMaxArgs && row.args[i].name; ++i)
    if (std::string(row.args[i].name) == "rep_grad") train.repGrad = train.weightingArgs[size_t(i)] != 0;
}

rt::ThreadPool& Model::pool() {
  if (!pool_) pool_ = std::make_unique<rt::ThreadPool>(settings_.threads);
  return *pool_;
}

// Where the next fit starts: from the seed, from loaded parameters (as `mtlc train --init`), or
// from the last fit's checkpoint. That one is continued as `--resume` does when the fit trains
// on the same training set (the program's, or arrays with as many rows), so that fit(epochs=1)
// twice trains as fit(epochs=2); on other data as `--init` (parameters, optimizer and weighting
// state, a new position).
void Model::continueFrom(rt::TrainOptions& to, const rt::Dataset* train, const FitSettings& fit) {
  const int64_t epochs = fit.epochs.value_or(spec().train.epochs);
  to.epochs = epochs;
  to.steps = fit.steps.value_or(-1);
  to.seed = fit.seed ? fit.seed : settings_.seed;
  if (origin_ == Origin::Seed) return;
  if (origin_ == Origin::Loaded) {
    rt::saveCheckpoint(statePath_, spec(), params_.data());
    to.initPath = statePath_;
    return;
  }
  const rt::TensorFile state = rt::readSafeTensors(statePath_);
  const std::optional<rt::TrainPosition> pos = rt::loadTrainPosition(state, statePath_, spec());
  const bool sameData = train ? pos && pos->rows == train->rows : lastFitOnProgramData_;
  if (pos && sameData && pos->batchSize == spec().train.batch) {
    to.resumePath = statePath_;
    to.seed = fit.seed;  // the run's own seed unless another is asked for (an error then)
    to.epochs = pos->epoch + epochs;
    if (fit.steps) to.steps = pos->step + *fit.steps;
    return;
  }
  to.initPath = statePath_;
}

py::dict Model::fit(const py::object& data, const py::object& test, const FitSettings& fit) {
  for (const auto& [arg, what] : {std::pair{&data, "data"}, std::pair{&test, "test"}})
    if (!arg->is_none() && !py::isinstance<py::dict>(*arg))
      throw py::type_error(fmt::format("fit: {} is a dict {{input or task name: array}}, got {}", what,
                                       std::string(py::str(py::type::of(*arg)))));
  std::optional<rt::Dataset> trainData, testData;
  if (!data.is_none()) trainData = datasetFromArrays(spec(), data.cast<py::dict>(), "fit");
  if (!test.is_none()) {
    if (!trainData)
      throw py::value_error("fit: test= goes with training arrays (the program's own data has its own test source)");
    testData = datasetFromArrays(spec(), test.cast<py::dict>(), "fit test");
  }
  rt::TrainOptions to;
  continueFrom(to, trainData ? &*trainData : nullptr, fit);
  to.threads = fit.threads.value_or(settings_.threads);
  to.quiet = fit.quiet.value_or(settings_.quiet);
  to.logPath = fit.logPath;
  to.savePath = statePath_;
  to.trainData = trainData ? &*trainData : nullptr;
  to.testData = testData ? &*testData : nullptr;
  std::string records = "[";  // the log's lines as one JSON array, parsed once at the end
  to.onLogLine = [&records](const std::string& line) {
    if (records.size() > 1) records += ',';
    records += line;
  };
  rt::TrainReport report;
  {
    PyStdout printed;
    std::ostream silent(nullptr);
    std::ostream& out = to.quiet ? silent : printed;
    py::gil_scoped_release nogil;
    report = rt::train(spec(), to, out);
    out.flush();
  }
  rt::loadParams(statePath_, spec(), params_.data());
  origin_ = Origin::Trained;
  lastFitOnProgramData_ = !trainData;
  steps_ = to.resumePath.empty() ? steps_ + report.steps : report.steps;  // a resumed run counts them all
  py::list steps, epochs;
  for (const auto& record : nlohmann::ordered_json::parse(records + "]"))
    (record.contains("step") ? steps : epochs).append(toPython(record));
  py::dict history;
  history["steps"] = steps;
  history["epochs"] = epochs;
  if (report.interruptedBy == SIGINT) {  // the training so far is kept; Python sees the Ctrl-C
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
  if (report.interruptedBy) std::raise(report.interruptedBy);  // SIGTERM: its usual end, state saved
  return history;
}

namespace {

// Embedding inputs take class indices: refused outside [0, categories) or fractional, as the
// trainer refuses them in its data (the kernels would clamp them to a row silently).
void checkIndices(const rt::InputSpec& in, const FloatArray& a, const char* call) {
  if (in.categories <= 0) return;
  const float* v = a.data();
  for (int64_t k = 0; k < int64_t(a.size()); ++k)
    if (!(v[k] >= 0 && v[k] < float(in.categories) && v[k] == std::floor(v[k])))
      throw py::value_error(fmt::format("{}: input `{}` sample {} holds {}, not an index in [0, {})", call, in.name,
                                        k / in.size, v[k], in.categories));
}

}  // namespace

// The arrays are read in place (C-contiguous float32) and the heads write straight into the
// returned arrays: batch b of maxBatch rows is a pointer into each.
py::dict Model::predict(const py::dict& inputs) {
  const rt::ModelSpec& s = spec();
  if (!s.predict) throw std::runtime_error("internal: model has no predict entry point");
  InputArrays in = inputArrays(s, inputs, "predict");
  for (size_t i = 0; i < s.inputs.size(); ++i) checkIndices(s.inputs[i], in.arrays[i], "predict");
  const size_t I = s.inputs.size(), T = s.tasks.size();
  std::vector<FloatArray> outs;
  std::vector<const float*> inBase(I), inPtrs(I), labelPtrs(T);
  std::vector<float*> outBase(T), outPtrs(T);
  for (size_t i = 0; i < I; ++i) inBase[i] = in.arrays[i].data();
  for (size_t t = 0; t < T; ++t) {
    outs.emplace_back(std::vector<py::ssize_t>{py::ssize_t(in.rows), py::ssize_t(s.tasks[t].outWidth)});
    outBase[t] = outs.back().mutable_data();
  }
  {
    py::gil_scoped_release nogil;
    rt::ScopedFlushDenormals flush(true);  // as the trainer evaluates
    rt::Arena acts(s.actsFloats);
    std::vector<rt::Arena> labels;  // predict reads no labels; the record still points at buffers
    for (size_t t = 0; t < T; ++t) labelPtrs[t] = labels.emplace_back(s.maxBatch * s.tasks[t].labelWidth).data();
    std::vector<float> weights = rt::lossWeights(s), losses(T + 1);
    // Per batch: n, and where inPtrs and outPtrs point; pool().attach sets the threads.
    mtlc_args args{.params = params_.data(), .grads = nullptr, .acts = acts.data(), .inputs = inPtrs.data(),
                   .labels = labelPtrs.data(), .loss_weights = weights.data(), .losses = losses.data(),
                   .outputs = outPtrs.data(), .n = 0, .seed = 0, .pool = nullptr, .parallel_for = nullptr,
                   .threads = 0, .grads_ready = nullptr, .grads_ready_ctx = nullptr};
    pool().attach(args);
    for (int64_t first = 0; first < in.rows; first += s.maxBatch) {
      for (size_t i = 0; i < I; ++i) inPtrs[i] = inBase[i] + first * s.inputs[i].size;
      for (size_t t = 0; t < T; ++t) outPtrs[t] = outBase[t] + first * s.tasks[t].outWidth;
      args.n = std::min(s.maxBatch, in.rows - first);
      s.predict(&args);
    }
  }
  py::dict result;
  for (size_t t = 0; t < T; ++t) result[py::str(s.tasks[t].name)] = outs[t];
  return result;
}

py::dict Model::evaluate(const py::dict& data) {
  const rt::Dataset d = datasetFromArrays(spec(), data, "evaluate");
  std::vector<rt::TaskResult> results;
  {
    py::gil_scoped_release nogil;
    rt::ScopedFlushDenormals flush(true);
    results = rt::evaluate(spec(), params_.data(), d, &pool());
  }
  py::dict metrics;
  for (size_t t = 0; t < results.size(); ++t)
    metrics[py::str(results[t].task)] = toPython(rt::metricsJson(spec().tasks[t], results[t]));
  return metrics;
}

// A snapshot: arrays of their own (torch.from_numpy shares them without a copy).
py::dict Model::stateDict() const {
  py::dict sd;
  for (const rt::ParamSpec& p : spec().params) {
    FloatArray a(std::vector<py::ssize_t>(p.shape.begin(), p.shape.end()));
    std::copy_n(params_.data() + p.offset, p.size, a.mutable_data());
    sd[py::str(p.name)] = a;
  }
  return sd;
}

// Every parameter with its exact shape, nothing else but state tensors (optim., mtl., train.,
// ignored); checked in full before any is written.
void Model::loadStateDict(const py::dict& sd) {
  const rt::ModelSpec& s = spec();
  for (const auto& [key, value] : sd) {
    const std::string name = py::str(key);
    const bool known = std::any_of(s.params.begin(), s.params.end(), [&](const rt::ParamSpec& p) { return p.name == name; });
    if (!known && !rt::isStateTensor(name))
      throw py::value_error(fmt::format("load_state_dict: `{}` is not a parameter of model `{}`", name, s.name));
  }
  std::vector<FloatArray> arrays;
  for (const rt::ParamSpec& p : s.params) {
    const std::string what = fmt::format("load_state_dict: parameter `{}`", p.name);
    if (!sd.contains(p.name)) throw py::value_error(fmt::format("{} {} is missing", what, shapeText(p.shape)));
    FloatArray a = asFloatArray(sd[py::str(p.name)], what);
    const std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
    if (shape != p.shape)
      throw py::value_error(fmt::format("{}: expected shape {}, got {}", what, shapeText(p.shape), shapeText(shape)));
    arrays.push_back(std::move(a));
  }
  for (size_t k = 0; k < s.params.size(); ++k)
    std::copy_n(arrays[k].data(), s.params[k].size, params_.data() + s.params[k].offset);
  origin_ = Origin::Loaded;
}

// After a fit: the trainer's checkpoint itself (what `mtlc train --save` writes), copied
// atomically; otherwise the parameters alone.
void Model::save(const std::string& path) const {
  if (origin_ != Origin::Trained) {
    rt::saveCheckpoint(path, spec(), params_.data());
    return;
  }
  const std::string tmp = path + ".tmp";
  fs::copy_file(statePath_, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, path);
}

// A checkpoint with a training position (from fit, save or `mtlc train`) becomes the state the
// next fit continues from; any other (parameters alone, a PyTorch state_dict as safetensors) sets
// the parameters.
void Model::load(const std::string& path) {
  const rt::TensorFile file = rt::readSafeTensors(path);
  rt::loadParams(file, path, spec(), params_.data());
  const std::optional<rt::TrainPosition> pos = rt::loadTrainPosition(file, path, spec());
  if (!pos) {
    origin_ = Origin::Loaded;
    return;
  }
  fs::copy_file(path, statePath_, fs::copy_options::overwrite_existing);
  origin_ = Origin::Trained;
  lastFitOnProgramData_ = false;
  steps_ = pos->step;
}

std::string Model::summary() const {
  std::vector<std::string> inputs, tasks;
  for (const rt::InputSpec& in : spec().inputs) inputs.push_back(in.name + " " + shapeText(in.shape));
  for (const rt::TaskSpec& t : spec().tasks) tasks.push_back(fmt::format("{} [{}]", t.name, t.outWidth));
  int64_t values = 0;
  for (const rt::ParamSpec& p : spec().params) values += p.size;
  return fmt::format("<mtlc.Model {}: inputs {}; tasks {}; {} parameter values; {} steps trained>", spec().name,
                     fmt::join(inputs, ", "), fmt::join(tasks, ", "), values, steps_);
}

}  // namespace mtlc::python
