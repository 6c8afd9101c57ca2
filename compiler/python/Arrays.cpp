#include "Arrays.h"

#include "spec/Error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace mtlc::python {

namespace {

using ConvertedArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// The per-sample shapes an input or a task's labels may come in (see Arrays.h).
std::vector<std::vector<int64_t>> inputForms(const rt::InputSpec& in) {
  std::vector<std::vector<int64_t>> forms{in.shape};
  if (in.shape.size() != 1) forms.push_back({in.size});
  if (in.size == 1) forms.push_back({});
  return forms;
}

std::vector<std::vector<int64_t>> labelForms(const rt::TaskSpec& t) {
  std::vector<std::vector<int64_t>> forms{{t.labelWidth}};
  if (t.labelWidth == 1) forms.push_back({});
  return forms;
}

std::string formsText(const std::vector<std::vector<int64_t>>& forms) {
  std::string s;
  for (size_t i = 0; i < forms.size(); ++i) {
    std::vector<int64_t> dims{-1};
    dims.insert(dims.end(), forms[i].begin(), forms[i].end());
    s += (i ? " or " : "") + shapeText(dims);
  }
  return s;
}

int64_t checkForms(const FloatArray& a, const std::vector<std::vector<int64_t>>& forms, const std::string& what) {
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  for (const auto& f : forms)
    if (shape.size() == f.size() + 1 && std::equal(f.begin(), f.end(), shape.begin() + 1)) return shape[0];
  throw py::value_error(fmt::format("{}: expected shape {}, got {}", what, formsText(forms), shapeText(shape)));
}

std::string joinNames(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

// Refuses keys that are neither an input nor a task of the model.
void checkKeys(const rt::ModelSpec& spec, const py::dict& data, const char* call) {
  std::vector<std::string> inputs, tasks;
  for (const auto& in : spec.inputs) inputs.push_back(in.name);
  for (const auto& t : spec.tasks) tasks.push_back(t.name);
  for (const auto& [key, value] : data) {
    if (!py::isinstance<py::str>(key))
      throw py::type_error(fmt::format("{}: the keys are input and task names (str), got {}", call,
                                       std::string(py::str(py::type::of(key)))));
    const std::string k = key.cast<std::string>();
    if (std::find(inputs.begin(), inputs.end(), k) == inputs.end() &&
        std::find(tasks.begin(), tasks.end(), k) == tasks.end())
      throw py::value_error(fmt::format("{}: `{}` is neither an input ({}) nor a task ({}) of model `{}`", call, k,
                                        joinNames(inputs), joinNames(tasks), spec.name));
  }
}

// Copies a checked array into a trainer field of `width` floats per sample.
rt::Field fieldOf(const std::string& name, int64_t width, const FloatArray& a) {
  rt::Field f;
  f.name = name;
  f.width = width;
  f.data.resize(size_t(a.size()));
  if (a.size()) std::memcpy(f.data.data(), a.data(), size_t(a.size()) * sizeof(float));
  return f;
}

}  // namespace

std::string shapeText(const std::vector<int64_t>& dims) {
  std::vector<std::string> parts;
  for (int64_t d : dims) parts.push_back(d < 0 ? "N" : std::to_string(d));
  return "[" + joinNames(parts) + "]";
}

FloatArray asFloatArray(const py::handle& value, const std::string& what) {
  py::object obj = py::reinterpret_borrow<py::object>(value);
  if (py::hasattr(obj, "detach") && py::hasattr(obj, "numpy"))  // a torch tensor: a view of its memory
    obj = obj.attr("detach")().attr("cpu")().attr("numpy")();
  if (!py::isinstance<py::array>(obj)) {
    try {
      obj = py::module_::import("numpy").attr("asarray")(obj);
    } catch (py::error_already_set& e) {
      throw py::type_error(fmt::format("{}: not an array ({})", what, e.what()));
    }
  }
  py::array arr = obj.cast<py::array>();
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw py::type_error(fmt::format("{}: dtype {} is not a number type (float32 is read in place; other float, "
                                     "integer and bool arrays are converted)",
                                     what, std::string(py::str(arr.dtype()))));
  return ConvertedArray::ensure(arr);  // the same array when it is C-contiguous float32
}

InputArrays inputArrays(const rt::ModelSpec& spec, const py::dict& data, const char* call) {
  checkKeys(spec, data, call);
  InputArrays r;
  std::string first;
  for (const rt::InputSpec& in : spec.inputs) {
    const std::string what = fmt::format("{}: input `{}`", call, in.name);
    if (!data.contains(in.name)) throw py::value_error(fmt::format("{}: no array given", what));
    FloatArray a = asFloatArray(data[py::str(in.name)], what);
    const int64_t rows = checkForms(a, inputForms(in), what);
    if (r.arrays.empty()) {
      r.rows = rows;
      first = in.name;
    } else if (rows != r.rows) {
      throw py::value_error(fmt::format("{} has {} rows, input `{}` has {}", what, rows, first, r.rows));
    }
    r.arrays.push_back(std::move(a));
  }
  return r;
}

rt::Dataset datasetFromArrays(const rt::ModelSpec& spec, const py::dict& data, const char* call) {
  InputArrays in = inputArrays(spec, data, call);
  rt::Dataset d;
  d.origin = "arrays";
  d.rows = in.rows;
  if (d.rows == 0) throw py::value_error(fmt::format("{}: the arrays have no rows", call));
  for (size_t i = 0; i < spec.inputs.size(); ++i)
    d.inputs.push_back(fieldOf(spec.inputs[i].name, spec.inputs[i].size, in.arrays[i]));
  for (const rt::TaskSpec& t : spec.tasks) {
    const std::string what = fmt::format("{}: task `{}`", call, t.name);
    if (!data.contains(t.name))
      throw py::value_error(fmt::format("{}: no labels given (NaN marks a missing label)", what));
    FloatArray a = asFloatArray(data[py::str(t.name)], what + " labels");
    const int64_t rows = checkForms(a, labelForms(t), what + " labels");
    if (rows != d.rows)
      throw py::value_error(fmt::format("{} has {} label rows, input `{}` has {}", what, rows, spec.inputs[0].name,
                                        d.rows));
    d.labels.push_back(fieldOf(t.name, t.labelWidth, a));
  }
  try {
    rt::validateInputs(spec.inputs, d);
    rt::validateLabels(spec.tasks, d);
  } catch (const rt::Error& e) {
    throw py::value_error(fmt::format("{}: {}", call, e.what()));
  }
  return d;
}

}  // namespace mtlc::python
