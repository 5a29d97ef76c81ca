//! Whole-tensor sums that are right on every backend.
//!
//! Burn 0.22's `sum()` over a whole tensor returns wrong values on lavapipe above ~262 000
//! elements (tests/kernels/lavapipe_sum.rs records it). Summing rows of at most `ROW` elements first
//! and then the row sums stays below that size for tensors of up to 268 M elements.

use burn::tensor::Tensor;

const ROW: usize = 1024;

/// Σ x over all elements, as a one-element tensor on `x`'s device (no host round trip).
pub fn sum(x: Tensor<1>) -> Tensor<1> {
    let [n] = x.dims();
    if n <= ROW {
        return x.sum();
    }
    let rows = n.div_ceil(ROW);
    let padded = if rows * ROW == n {
        x
    } else {
        let zeros = Tensor::zeros([rows * ROW - n], &x.device());
        Tensor::cat(vec![x, zeros], 0)
    };
    padded.reshape([rows, ROW]).sum_dim(1).reshape([rows]).sum()
}
