//! The vector a head reads from the last hidden states: the first token's or the last real one's.

use burn::tensor::{Int, Tensor};

/// The hidden state at position 0 of each row, `[batch, hidden]`.
pub fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, width] = hidden.dims();
    hidden.narrow(1, 0, 1).reshape([batch, width])
}

/// The hidden state at each row's last real token (inputs padded on the right), `[batch, hidden]`.
pub fn last_real_token(hidden: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    let [batch, seq, width] = hidden.dims();
    let last = attention_mask
        .sum_dim(1)
        .sub_scalar(1.0)
        .expand([batch, seq]);
    let positions = Tensor::<1, Int>::arange(0..seq as i64, &hidden.device())
        .float()
        .unsqueeze::<2>()
        .expand([batch, seq]);
    let pick = positions.equal(last).float().unsqueeze_dim::<3>(2);
    (hidden * pick).sum_dim(1).reshape([batch, width])
}

/// The hidden state at each row's last token whose id is not `pad_id` (transformers' rule for
/// the decoders' `score` head), `[batch, hidden]`.
pub fn last_non_pad_token(
    hidden: Tensor<3>,
    input_ids: Tensor<2, Int>,
    pad_id: usize,
) -> Tensor<2> {
    let [batch, seq, width] = hidden.dims();
    let positions = Tensor::<1, Int>::arange(0..seq as i64, &hidden.device())
        .unsqueeze::<2>()
        .expand([batch, seq]);
    let last = (positions * input_ids.not_equal_elem(pad_id as i64).int()).argmax(1);
    let index = last.reshape([batch, 1, 1]).expand([batch, 1, width]);
    hidden.gather(1, index).reshape([batch, width])
}

/// The mean of each row's hidden states over its real tokens, `[batch, hidden]`.
pub fn mean_of_real_tokens(hidden: Tensor<3>, attention_mask: Tensor<2>) -> Tensor<2> {
    let [batch, seq, width] = hidden.dims();
    let mask = attention_mask.reshape([batch, seq, 1]);
    let sums = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
    sums / mask.sum_dim(1).reshape([batch, 1])
}
