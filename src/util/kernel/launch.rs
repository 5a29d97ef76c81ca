//! What the WGSL kernels share on wgpu devices: the kernel macro, dense tensors, the launch
//! grid, buffer bindings and the parameter blocks kept on the device.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, into_contiguous};
use burn::cubecl::prelude::BufferIOAttr;
use burn::cubecl::server::{Handle, KernelArguments};
use burn::cubecl::{CubeCount, CubeDim, Device as CubeDevice};
use burn::tensor::{DType, Shape};

/// Threads per workgroup in every shader under shaders/.
pub(crate) const WORKGROUP: u32 = 256;

/// `wgsl_kernel!(Name, "a.wgsl", "b.wgsl")`: the cubecl kernel whose source is those files of
/// shaders/, one after the other (how a shader gets shaders/philox.wgsl: WGSL has no includes).
macro_rules! wgsl_kernel {
    ($name:ident, $($file:literal),+) => {
        struct $name;

        impl burn::backend::wgpu::KernelSource for $name {
            fn source(&self) -> burn::backend::wgpu::SourceTemplate {
                burn::backend::wgpu::SourceTemplate::new(concat!(
                    $(include_str!(concat!("../../shaders/", $file))),+
                ))
            }

            fn id(&self) -> burn::cubecl::prelude::KernelId {
                burn::cubecl::prelude::KernelId::new::<Self>()
            }

            fn lang(&self) -> &'static str {
                "wgsl"
            }
        }
    };
}
pub(crate) use wgsl_kernel;

/// The f32 tensor laid out as one dense row-major array, as the shaders index it.
pub(crate) fn dense(t: CubeTensor) -> CubeTensor {
    assert_eq!(t.dtype, DType::F32, "the kernels take f32 tensors");
    into_contiguous(t)
}

/// A fresh dense tensor of `shape` on `like`'s device.
pub(crate) fn empty(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * dtype.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        dtype,
    )
}

/// Workgroups along the grid's x dimension at most; more fold into rows (a dimension allows
/// 65 535). A power of two well below that keeps the folded case testable on lavapipe, whose
/// buffers stop short of the 268 MB that one more element than 65 535 × 1 024 takes.
pub const GRID_WIDTH: u32 = 16_384;

/// One thread per quad of elements 4q .. 4q + 3 (τ comes four to a Philox call, and a thread
/// with four elements costs lavapipe far less than four threads): see [`thread_grid`].
pub(crate) fn quad_grid(n: usize) -> CubeCount {
    thread_grid(n.div_ceil(4))
}

/// ⌈threads / 256⌉ workgroups of 256, in rows of [`GRID_WIDTH`].
pub(crate) fn thread_grid(threads: usize) -> CubeCount {
    let groups = u32::try_from(threads.div_ceil(WORKGROUP as usize)).expect("tensor too large");
    let x = groups.clamp(1, GRID_WIDTH);
    CubeCount::Static(x, groups.div_ceil(x), 1)
}

/// How a kernel uses a bound buffer; `Unused` fills a binding the current op does not touch.
#[derive(Clone, Copy)]
pub(crate) enum Io {
    Read,
    Write,
    /// Read, then written in place.
    ReadWrite,
    Unused,
}

/// The binding of `t` used as `io`, or of `spare` marked unused where the launch has no such
/// tensor (every binding of a shader must be filled). `spare` must not be bound elsewhere in
/// the launch: WebGPU refuses a buffer in two writable bindings, and every binding of our
/// shaders is read_write (see [`spare`]).
pub(crate) fn bind<'a>(
    t: Option<&'a CubeTensor>,
    io: Io,
    spare: &'a CubeTensor,
) -> (&'a Handle, Io) {
    match t {
        Some(t) => (&t.handle, io),
        None => (&spare.handle, Io::Unused),
    }
}

/// A one-element buffer on `like`'s device to fill unused bindings with.
pub(crate) fn spare(like: &CubeTensor) -> CubeTensor {
    empty(like, Shape::new([1]), DType::F32)
}

/// A launch's parameter block. `Kept` blocks recur (a tensor's, every step) and stay on the
/// device; a `Step` block changes every step (it holds the step, or b, which stage 1 learns), so
/// only the latest few are kept, and memory stays flat over a long run.
#[derive(Clone, Copy)]
pub(crate) enum Block<'a> {
    Kept(&'a [u32]),
    Step(&'a [u32]),
}

/// Launches `kernel` on `on`'s device with `buffers` at bindings 0.. and each block of `params`
/// in a small storage buffer after them. Not a uniform: lavapipe folds uniform values that steer
/// branches into the shader and compiles it again for every launch (≈5 ms and ≈400 KB of host
/// memory that is never given back); tests/cli/interruption.rs watches memory over 1 000 steps.
pub(crate) fn launch<K: KernelSource>(
    on: &CubeTensor,
    kernel: K,
    grid: CubeCount,
    buffers: &[(&Handle, Io)],
    params: &[Block],
) {
    let mut args = KernelArguments::new();
    for (handle, io) in buffers {
        let io = match io {
            Io::Read => BufferIOAttr::ReadOnly,
            Io::Write => BufferIOAttr::WriteOnly,
            Io::ReadWrite => BufferIOAttr::ReadWrite,
            Io::Unused => BufferIOAttr::Dead,
        };
        args = args.with_buffer_io((*handle).clone().binding(), io);
    }
    for block in params {
        args = args.with_buffer_io(uploaded(on, *block).binding(), BufferIOAttr::ReadOnly);
    }
    LAUNCHES.with(|n| n.set(n.get() + 1));
    on.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(WORKGROUP))),
        grid,
        args,
    );
}

/// A step's parameter block: its `head` words, then every b_j (the shaders' `StepBlock`: b
/// rides with the words every tensor of a step shares, so it costs no binding and no upload of
/// its own).
pub(crate) fn step_block(head: &[u32], b: &[f32]) -> Vec<u32> {
    head.iter()
        .copied()
        .chain(b.iter().map(|b_j| b_j.to_bits()))
        .collect()
}

/// `t` dense, in a buffer a kernel may overwrite: its own where no other tensor holds it
/// (`can_mut`; launches already queued on it run first), else a copy (one more launch).
pub(crate) fn writable(t: CubeTensor) -> CubeTensor {
    let t = dense(t);
    if t.can_mut() { t } else { t.copy() }
}

/// Parameter blocks kept on their device, by content: a block's words are uploaded once and the
/// buffer is bound again wherever they recur (a tensor's block every step, a step's block for
/// every tensor). An upload per launch cost lavapipe ≈0.15 ms, half of a small launch.
struct ParamsCache {
    blocks: HashMap<(CubeDevice, Vec<u32>), (Handle, u64)>,
    /// The same for [`Block::Step`] blocks, at most [`STEP_BLOCKS_KEPT`].
    step_blocks: HashMap<(CubeDevice, Vec<u32>), (Handle, u64)>,
    /// Lookups so far; each block remembers its latest, and the stalest goes first when full.
    clock: u64,
}

/// Kept blocks at most: far more than the tensors' blocks of a model (three kernels per
/// trainable tensor).
const PARAMS_KEPT: usize = 4096;

/// Step blocks kept: a step's own (each kernel kind has one) and the step before's.
const STEP_BLOCKS_KEPT: usize = 8;

static PARAMS: LazyLock<Mutex<ParamsCache>> = LazyLock::new(|| {
    Mutex::new(ParamsCache {
        blocks: HashMap::new(),
        step_blocks: HashMap::new(),
        clock: 0,
    })
});

thread_local! {
    /// This project's kernel launches on this thread so far.
    static LAUNCHES: Cell<u64> = const { Cell::new(0) };
}

/// Launches of this project's kernels on this thread so far (cubecl's own are counted by
/// [`super::watch::LaunchCount`]).
pub fn launches() -> u64 {
    LAUNCHES.with(Cell::get)
}

/// How many kept and step parameter blocks are on their devices now (for the tests).
#[doc(hidden)]
pub fn params_blocks() -> (usize, usize) {
    let cache = PARAMS.lock().unwrap_or_else(PoisonError::into_inner);
    (cache.blocks.len(), cache.step_blocks.len())
}

/// The buffer holding `block`'s words on `on`'s device.
fn uploaded(on: &CubeTensor, block: Block) -> Handle {
    let mut guard = PARAMS.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = &mut *guard;
    cache.clock += 1;
    let now = cache.clock;
    let (words, blocks, kept) = match block {
        Block::Kept(words) => (words, &mut cache.blocks, PARAMS_KEPT),
        Block::Step(words) => (words, &mut cache.step_blocks, STEP_BLOCKS_KEPT),
    };
    let key = (on.device.clone(), words.to_vec());
    if let Some((handle, used)) = blocks.get_mut(&key) {
        *used = now;
        return handle.clone();
    }
    if blocks.len() >= kept {
        let stalest = blocks
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| key.clone());
        if let Some(key) = stalest {
            blocks.remove(&key);
        }
    }
    crate::util::device::count_upload(4 * words.len());
    let handle = on.client.create_from_slice(bytemuck::cast_slice(words));
    blocks.insert(key, (handle.clone(), now));
    handle
}
