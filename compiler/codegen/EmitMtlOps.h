// Emitters for the multi-task ops of issue #4 (expert mixtures, gates, embeddings, concatenation),
// kept out of Kernel.h so they can evolve without touching the core kernel emitters. Same
// contract as the emitters Kernel.h declares: the body of one node's kernel function.
#pragma once

#include "Kernel.h"

namespace mtlc::codegen {

// EmitMixture.cpp
void emitSoftmax(Kernel &k);        // per-sample softmax over [k], max-subtracted, double sum
void emitSoftmaxBwd(Kernel &k);     // y, dy -> y·(dy − Σ y·dy)
void emitMix(Kernel &k);            // w, x_0..x_{E-1} -> Σ_k w_k·x_k (gate [E] or matrix row)
void emitMixBwdWeights(Kernel &k);  // dy, x_0.. -> dw (batched gate, or [R,E] with one row set)
void emitMixBwdInput(Kernel &k);    // w, dy -> w_k·dy

// EmitGather.cpp
void emitEmbedding(Kernel &k);      // table[V,D], idx[k] -> [k·D]; indices clamped to [0, V−1]
void emitEmbeddingBwd(Kernel &k);   // idx, dy -> dtable[V,D]: zero, then scatter-add
void emitConcat(Kernel &k);         // x_0.. -> per-sample concatenation
void emitSlice(Kernel &k);          // x[d] -> x[offset, offset+width)
void emitTranspose(Kernel &k);      // x[R, C] -> [C, R]
void emitSliceBwd(Kernel &k);       // dy[width] -> dx[d]: zero, dy at [offset, offset+width)

}  // namespace mtlc::codegen
