//! The model's fused ops: each runs as one op per direction with its own backward pass, as a
//! WGSL kernel on wgpu devices and a CPU twin on the CPU device (`linear` and `attention` go
//! through gemm on the CPU and keep Burn's products on wgpu).

pub mod attention;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod softmax;
