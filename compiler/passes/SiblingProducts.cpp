// The pass `siblings`: sibling products (ir/Siblings.h) whose weights lie back to back in the
// arena become one product over the weights' span. For a run W₀..Wₖ (arena order, rows Nⱼ):
//
//   forward   Z = A·[W₀;..;Wₖ]ᵀ  [n, ΣN]; each old product reads its columns: slice(Z, offⱼ, Nⱼ)
//   backward  C = concat(dY₀..dYₖ)  [n, ΣN]
//             d[W₀;..;Wₖ] = Cᵀ·A    one gradient output for the span (when each Wⱼ's gradient was
//                                   exactly dYⱼᵀ·A); (Aᵀ·C)ᵀ where that fills vectors better
//             dA = C·[W₀;..;Wₖ]     in place of Σⱼ dYⱼ·Wⱼ (when those products only feed that sum)
//
// Each element is the same sum as before over the same terms; only the products' blocking, and so
// the order of the additions inside one dot product, can differ. The old nodes are left for dce.
#include "Passes.h"

#include "ir/Builder.h"
#include "ir/Siblings.h"

#include <algorithm>
#include <set>
#include <unordered_map>

namespace mtlc::passes {

using ir::Node;
using ir::OpKind;

namespace {

struct Member {
  Node *product;  // A·Wᵀ
  int param;
  int64_t rows;
};

// Moves the nodes appended to f since `mark` (its size then) in front of `anchor`, in order.
void moveBefore(ir::Function &f, size_t mark, const Node *anchor) {
  std::vector<std::unique_ptr<Node>> fresh;
  for (size_t i = mark; i < f.nodes.size(); ++i) fresh.push_back(std::move(f.nodes[i]));
  f.nodes.resize(mark);
  auto at = std::find_if(f.nodes.begin(), f.nodes.end(), [&](const auto &n) { return n.get() == anchor; });
  f.nodes.insert(at, std::make_move_iterator(fresh.begin()), std::make_move_iterator(fresh.end()));
}

size_t positionOf(const ir::Function &f, const Node *n) {
  for (size_t i = 0; i < f.nodes.size(); ++i)
    if (f.nodes[i].get() == n) return i;
  return f.nodes.size();
}

bool isMatMul(const Node *n, int64_t transA, int64_t transB) {
  return n->op == OpKind::MatMul && n->ints.size() >= 2 && n->ints[0] == transA && n->ints[1] == transB;
}

// The runs of adjacent weights among a group's members, each in arena order.
std::vector<std::vector<Member>> adjacentRuns(const ir::Module &m, const ir::SiblingProducts &g) {
  std::vector<Member> ms;
  for (size_t j = 0; j < g.products.size(); ++j)
    ms.push_back({g.products[j], g.params[j], m.params[g.params[j]].shape[0]});
  std::sort(ms.begin(), ms.end(), [&](const Member &a, const Member &b) {
    return m.params[a.param].offset < m.params[b.param].offset;
  });
  std::vector<std::vector<Member>> runs;
  for (const Member &x : ms) {
    const ir::ParamInfo &p = m.params[x.param];
    if (!runs.empty()) {
      const ir::ParamInfo &prev = m.params[runs.back().back().param];
      if (prev.offset + prev.elements() == p.offset) {
        runs.back().push_back(x);
        continue;
      }
    }
    runs.push_back({x});
  }
  std::erase_if(runs, [](const auto &r) { return r.size() < 2; });
  return runs;
}

class RunRewrite {
 public:
  RunRewrite(const ir::Module &m, ir::Function &f, Node *input, std::vector<Member> run)
      : m_(m), f_(f), b_(f), a_(input), run_(std::move(run)) {
    for (const Member &x : run_) rows_ += x.rows;
  }

  void forward() {
    const size_t mark = f_.nodes.size();
    span_ = b_.param(run_.front().param, {rows_, m_.params[run_.front().param].shape[1]});
    Node *z = b_.matmul(a_, span_, false, true);
    int64_t offset = 0;
    std::vector<std::pair<Node *, Node *>> replace;
    for (const Member &x : run_) {
      replace.push_back({x.product, b_.slice(z, offset, x.rows)});
      offset += x.rows;
    }
    const Node *earliest = run_.front().product;
    for (const Member &x : run_)
      if (positionOf(f_, x.product) < positionOf(f_, earliest)) earliest = x.product;
    moveBefore(f_, mark, earliest);
    for (auto [from, to] : replace) f_.replaceAllUses(from, to);
  }

  // d[W₀;..;Wₖ] = Cᵀ·A when every Wⱼ's gradient output is dYⱼᵀ·A.
  void weightGradient() {
    std::vector<size_t> outputs;
    for (const Member &x : run_) {
      auto o = std::find_if(f_.outputs.begin(), f_.outputs.end(), [&](const ir::Output &out) {
        return out.kind == ir::Output::Kind::Grad && out.index == x.param;
      });
      if (o == f_.outputs.end()) return;
      Node *dw = o->value;
      if (!isMatMul(dw, 1, 0) || dw->operands[1] != a_ || !isAdjoint(dw->operands[0], x)) return;
      outputs.push_back(size_t(o - f_.outputs.begin()));
      dys_.push_back(dw->operands[0]);
    }
    Node *last = nullptr;
    for (size_t i : outputs)
      if (!last || positionOf(f_, f_.outputs[i].value) > positionOf(f_, last)) last = f_.outputs[i].value;
    const size_t mark = f_.nodes.size();
    const int64_t width = m_.params[run_.front().param].shape[1];
    Node *dw = computeTransposed(width) ? b_.transpose(b_.matmul(a_, concatenated(), true, false))
                                        : b_.matmul(concatenated(), a_, true, false);
    dw->name = "d(" + m_.params[run_.front().param].name + " .. " + m_.params[run_.back().param].name + ")";
    moveBefore(f_, mark, last);
    const size_t first = *std::min_element(outputs.begin(), outputs.end());
    f_.outputs[first] = {ir::Output::Kind::Grad, run_.front().param, dw};
    std::set<size_t> drop(outputs.begin(), outputs.end());
    drop.erase(first);
    for (auto it = drop.rbegin(); it != drop.rend(); ++it) f_.outputs.erase(f_.outputs.begin() + long(*it));
  }

  // dA = C·[W₀;..;Wₖ] in place of the sum Σⱼ dYⱼ·Wⱼ, when those products feed only that sum.
  void inputGradient() {
    if (dys_.size() != run_.size()) return;  // needs the adjoints weightGradient found
    const std::vector<int> uses = f_.useCounts();
    std::unordered_map<const Node *, int> useOf;
    for (size_t i = 0; i < f_.nodes.size(); ++i) useOf[f_.nodes[i].get()] = uses[i];
    std::set<Node *> terms;
    for (size_t j = 0; j < run_.size(); ++j) {
      Node *dx = nullptr;
      for (const auto &n : f_.nodes)
        if (isMatMul(n.get(), 0, 0) && n->operands[0] == dys_[j] && n->operands[1]->op == OpKind::Param &&
            n->operands[1]->ints.at(0) == run_[j].param && n->operands[1]->type.dims == m_.params[run_[j].param].shape) {
          if (dx) return;  // two: not the sum's term
          dx = n.get();
        }
      if (!dx || useOf[dx] != 1) return;
      terms.insert(dx);
    }
    // Fold the adds whose operands are both partial sums of the terms, in program order.
    for (const auto &n : f_.nodes) {
      if (n->op != OpKind::Add || n->operands[0] == n->operands[1]) continue;
      Node *l = n->operands[0], *r = n->operands[1];
      if (!terms.count(l) || !terms.count(r) || useOf[l] != 1 || useOf[r] != 1) continue;
      terms.erase(l), terms.erase(r), terms.insert(n.get());
    }
    if (terms.size() != 1 || (*terms.begin())->op != OpKind::Add) return;
    Node *sum = *terms.begin();
    const size_t mark = f_.nodes.size();
    Node *dx = b_.matmul(concatenated(), span_, false, false);
    if (dx->type != sum->type) {
      f_.nodes.pop_back();
      return;
    }
    moveBefore(f_, mark, sum);
    if (positionOf(f_, concat_) > positionOf(f_, dx)) {  // C was placed for a later weight gradient
      const size_t at = positionOf(f_, concat_);
      std::unique_ptr<Node> c = std::move(f_.nodes[at]);
      f_.nodes.erase(f_.nodes.begin() + long(at));
      f_.nodes.insert(f_.nodes.begin() + long(positionOf(f_, dx)), std::move(c));
    }
    f_.replaceAllUses(sum, dx);
  }

 private:
  // A product's vectors run along its rows: the span's gradient [ΣN, width] is computed as the
  // [width, ΣN] product Aᵀ·C and transposed (a copy of 1/batch of its work) where ΣN fills 16-float
  // vectors better than width does (a mixture over 100 inputs: width 100 is 6.25 vectors, ΣN = 144
  // is 9). Not at small batches, where the product is little more than its stores.
  bool computeTransposed(int64_t width) const {
    auto laneUse = [](int64_t n) { return double(n) / double((n + 15) / 16 * 16); };
    return m_.maxBatch >= 32 && laneUse(rows_) > laneUse(width) + 0.05;
  }

  // dY is the adjoint of member x's product: batched [rows], as the product's type.
  bool isAdjoint(const Node *dy, const Member &x) const { return dy->type == x.product->type; }

  // C = concat(dY₀..dYₖ), built once, placed before its first reader (the caller moves it).
  Node *concatenated() {
    if (!concat_) concat_ = b_.concat(dys_);
    return concat_;
  }

  const ir::Module &m_;
  ir::Function &f_;
  ir::Builder b_;
  Node *a_;
  std::vector<Member> run_;
  int64_t rows_ = 0;
  Node *span_ = nullptr, *concat_ = nullptr;
  std::vector<Node *> dys_;
};

}  // namespace

bool fuseSiblingProducts(const ir::Module &m, ir::Function &f) {
  bool changed = false;
  for (const ir::SiblingProducts &g : ir::findSiblingProducts(m, f))
    for (std::vector<Member> &run : adjacentRuns(m, g)) {
      RunRewrite rw(m, f, g.input, std::move(run));
      rw.forward();
      rw.weightGradient();
      rw.inputGradient();
      changed = true;
    }
  return changed;
}

}  // namespace mtlc::passes
