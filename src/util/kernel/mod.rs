//! What every kernel file (the PAC kernels in src/pac, the fused ops in src/ops) shares:
//! [`launch`] on wgpu devices, [`cpu`] for their CPU twins, and [`flush`], which keeps
//! subnormal floats off the CPU device's threads.

pub mod cpu;
pub mod flush;
pub mod launch;
pub mod watch;
