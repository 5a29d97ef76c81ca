//! The backend extension on each backend: every method forwards to the file that owns its
//! shader, `*_wgsl` on wgpu devices (`Cube`), `*_cpu` on the CPU device (`Flex`).

use burn::backend::flex::FlexTensor;
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, Flex};
use burn::tensor::Shape;

use super::backend::{AdamScalars, Inputs, PacBackend, Tau};
use super::{kl, noise, noise_adam};

impl PacBackend for Cube {
    fn pac_inject(theta: CubeTensor, p: CubeTensor, tau: Tau<Self>, j: u32) -> CubeTensor {
        noise::inject_wgsl(theta, p, tau, j)
    }

    fn pac_noise_adam(
        p: CubeTensor,
        g: CubeTensor,
        theta: CubeTensor,
        theta0: CubeTensor,
        mv: CubeTensor,
        first: bool,
        tau: Tau<Self>,
        j: u32,
        b: Vec<f32>,
        scalars: AdamScalars,
        write_grad: bool,
    ) -> (CubeTensor, CubeTensor, CubeTensor, Option<CubeTensor>) {
        let moments = (!first).then_some(mv);
        let tensors = Inputs {
            p,
            g,
            theta,
            theta0,
            moments,
        };
        noise_adam::step_wgsl(tensors, tau, j, &b, scalars, write_grad)
    }

    fn pac_prior(theta: CubeTensor, scale: f32, seed: u32, step: u32, j: u32) -> CubeTensor {
        noise::prior_wgsl(theta, scale, seed, step, j)
    }

    fn pac_draw(on: CubeTensor, shape: Shape, seed: u32, step: u32, j: u32) -> CubeTensor {
        noise::draw_wgsl(on, shape, seed, step, j)
    }

    fn pac_kl_partials(
        partials: CubeTensor,
        theta: CubeTensor,
        theta0: CubeTensor,
        p: CubeTensor,
        b: Vec<f32>,
        j: u32,
        tau: Tau<Self>,
        inject: bool,
    ) -> (CubeTensor, Option<CubeTensor>) {
        kl::partials_wgsl(partials, theta, theta0, p, &b, j, inject.then_some(tau))
    }

    fn pac_kl_finish(partials: CubeTensor) -> CubeTensor {
        kl::finish_wgsl(partials)
    }
}

impl PacBackend for Flex {
    fn pac_inject(theta: FlexTensor, p: FlexTensor, tau: Tau<Self>, j: u32) -> FlexTensor {
        noise::inject_cpu(theta, p, tau, j)
    }

    fn pac_noise_adam(
        p: FlexTensor,
        g: FlexTensor,
        theta: FlexTensor,
        theta0: FlexTensor,
        mv: FlexTensor,
        first: bool,
        tau: Tau<Self>,
        j: u32,
        b: Vec<f32>,
        scalars: AdamScalars,
        write_grad: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor, Option<FlexTensor>) {
        let moments = (!first).then_some(mv);
        let tensors = Inputs {
            p,
            g,
            theta,
            theta0,
            moments,
        };
        noise_adam::step_cpu(tensors, tau, j, &b, scalars, write_grad)
    }

    fn pac_prior(theta: FlexTensor, scale: f32, seed: u32, step: u32, j: u32) -> FlexTensor {
        noise::prior_cpu(theta, scale, seed, step, j)
    }

    fn pac_draw(_on: FlexTensor, shape: Shape, seed: u32, step: u32, j: u32) -> FlexTensor {
        noise::draw_cpu(shape, seed, step, j)
    }

    fn pac_kl_partials(
        partials: FlexTensor,
        theta: FlexTensor,
        theta0: FlexTensor,
        p: FlexTensor,
        b: Vec<f32>,
        j: u32,
        tau: Tau<Self>,
        inject: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        kl::partials_cpu(partials, theta, theta0, p, &b, j, inject.then_some(tau))
    }

    fn pac_kl_finish(partials: FlexTensor) -> FlexTensor {
        kl::finish_cpu(partials)
    }
}
