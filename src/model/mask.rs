//! The additive attention masks: 0 where a query may read a key, [`MASKED_SCORE`] where not.

use burn::tensor::{Device, Tensor};

/// Added to attention scores at masked key positions (HF uses the dtype's minimum; any value
/// that underflows `exp` gives the same probabilities).
pub(crate) const MASKED_SCORE: f32 = -1e9;

/// `[batch, 1, 1, seq]`: 0 at real tokens and [`MASKED_SCORE`] at padding, from a 0/1 mask.
pub(crate) fn padding_bias(attention_mask: Tensor<2>) -> Tensor<4> {
    let [batch, seq] = attention_mask.dims();
    (attention_mask.neg().add_scalar(1.0) * MASKED_SCORE).reshape([batch, 1, 1, seq])
}

/// `[1, 1, seq, seq]`: [`MASKED_SCORE`] where key j is after query i, or, with a window w,
/// where i − j ≥ w; else 0.
pub(crate) fn causal_bias(seq: usize, window: Option<usize>, device: &Device) -> Tensor<4> {
    let future = Tensor::<2>::ones([seq, seq], device).triu(1);
    let masked = match window {
        Some(w) if w < seq => future + Tensor::<2>::ones([seq, seq], device).tril(-(w as i64)),
        _ => future,
    };
    (masked * MASKED_SCORE).reshape([1, 1, seq, seq])
}

/// `[1, 1, seq, seq]`: [`MASKED_SCORE`] where |i − j| > `half`, else 0.
pub(crate) fn window_bias(seq: usize, half: usize, device: &Device) -> Tensor<4> {
    let ones = || Tensor::<2>::ones([seq, seq], device);
    let outside = ones().triu(half as i64 + 1) + ones().tril(-(half as i64) - 1);
    (outside * MASKED_SCORE).reshape([1, 1, seq, seq])
}
