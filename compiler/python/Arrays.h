// numpy arrays (and PyTorch tensors) at the module's edge: what a dict of arrays means to a model,
// checked with errors that name the input or task and both shapes.
//
// Accepted: numpy arrays, torch tensors (their .numpy() view, no copy), and anything np.asarray
// takes. Dtypes: float32 is read as it is; other float, integer and bool dtypes are converted to
// float32 (a copy). Anything else (complex, strings, objects) is a TypeError. Shapes: an input
// declared f32[d1, ..., dk] takes [N, d1, ..., dk] or the flattened [N, d1·…·dk]; a task's labels
// [N] or [N, 1] (class index, 0/1, a scalar target) or [N, width] for a wider mse/l1 target.
#pragma once

#include "runtime/data/Dataset.h"
#include "spec/ModelSpec.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace mtlc::python {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style>;

// The array `value` holds as C-contiguous float32: the same memory when it already is one, else a
// converted copy. `what` names it in errors ("input `image`").
FloatArray asFloatArray(const py::handle& value, const std::string& what);

// The model's inputs from `data` (other keys that are task names are ignored; any other key is a
// ValueError), in model input order, with their common row count.
struct InputArrays {
  std::vector<FloatArray> arrays;
  int64_t rows = 0;
};
InputArrays inputArrays(const rt::ModelSpec& spec, const py::dict& data, const char* call);

// A Dataset of the model's inputs and every task's labels from `data` (copied into the trainer's
// buffers), validated as the trainer validates its sources (ValueError naming the row otherwise).
rt::Dataset datasetFromArrays(const rt::ModelSpec& spec, const py::dict& data, const char* call);

// "[N, 1, 28, 28]" / "[100, 28, 28]"
std::string shapeText(const std::vector<int64_t>& dims);

}  // namespace mtlc::python
