//! What the CPU twins share on the CPU device: block-wise lanes, sums and maxima that
//! vectorise, branch-free exponentials, matrix products through gemm, the threads that run
//! them (each flushing subnormals, see [`super::flush`]) and the AVX2 copy they run where the
//! CPU has it.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData};

use super::flush;

/// The f32 values of `t` in row-major order, borrowed when already dense.
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "the kernels take f32 tensors");
    match t.as_slice::<f32>() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .try_into_vec()
                .expect("f32 data"),
        ),
    }
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A matrix over a slice of f32: `rows × cols` values, (i, j) at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    strides: (usize, usize),
}

impl<'a> Matrix<'a> {
    /// `rows × cols` values from the start of `data`, each row `row_stride` after the last.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let last = (rows.max(1) - 1) * row_stride + cols.max(1) - 1;
        assert!(
            rows * cols == 0 || last < data.len(),
            "a {rows}×{cols} matrix past the end of its {} values",
            data.len()
        );
        Matrix {
            data,
            rows,
            cols,
            strides: (row_stride, 1),
        }
    }

    /// Rows `first..first + count`.
    fn row_range(self, first: usize, count: usize) -> Self {
        assert!(first + count <= self.rows, "rows past the matrix");
        Matrix {
            data: &self.data[(first * self.strides.0).min(self.data.len())..],
            rows: count,
            ..self
        }
    }

    /// The transpose: the same values, read down the columns.
    pub(crate) fn t(self) -> Self {
        Matrix {
            rows: self.cols,
            cols: self.rows,
            strides: (self.strides.1, self.strides.0),
            ..self
        }
    }
}

/// a·b as a new row-major matrix.
pub(crate) fn matmul(a: Matrix, b: Matrix) -> Vec<f32> {
    let len = a.rows * b.cols;
    let mut out = Vec::with_capacity(len);
    // SAFETY: the product writes all `len` values (`out`'s capacity) and, told not to read the
    // destination, reads none of them.
    unsafe {
        gemm_into(out.as_mut_ptr(), b.cols, a, b, false);
        out.set_len(len);
    }
    out
}

/// out += a·b, `out` row-major and dense.
pub(crate) fn matmul_add(out: &mut [f32], a: Matrix, b: Matrix) {
    assert_eq!(out.len(), a.rows * b.cols, "output of the product's size");
    // SAFETY: `out` holds the whole product, initialised.
    unsafe { gemm_into(out.as_mut_ptr(), b.cols, a, b, true) }
}

/// `dst = [dst +] a·b`, the rows split over the CPU's threads when the product is worth it,
/// each share one single-threaded gemm call (gemm's own threading of a tall product runs its
/// inner kernel slower, as perf shows: it stops packing the rows).
///
/// # Safety
/// `dst` must be valid for the `a.rows × b.cols` values at rows `dst_row_stride` apart, and
/// initialised there when `read_dst`.
unsafe fn gemm_into(dst: *mut f32, dst_row_stride: usize, a: Matrix, b: Matrix, read_dst: bool) {
    let work = a.rows * b.cols * a.cols;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let share = a.rows.div_ceil(threads).max(MIN_SHARE_ROWS);
    if work < PARALLEL_PRODUCT || share >= a.rows {
        // SAFETY: as the caller says.
        return unsafe { gemm_rows(dst, dst_row_stride, a, b, read_dst, 1.0) };
    }
    /// A share's output rows, handed to its thread.
    struct Rows(*mut f32);
    // SAFETY: the shares' rows of `dst` are disjoint.
    unsafe impl Send for Rows {}
    std::thread::scope(|scope| {
        for first in (0..a.rows).step_by(share) {
            let a = a.row_range(first, share.min(a.rows - first));
            // SAFETY: row `first` lies in `dst`, as the caller says.
            let rows = Rows(unsafe { dst.add(first * dst_row_stride) });
            flush::spawn(scope, move || {
                let rows = rows;
                // SAFETY: this share's rows lie in `dst`.
                unsafe { gemm_rows(rows.0, dst_row_stride, a, b, read_dst, 1.0) }
            });
        }
    });
}

/// out = [out +] scale·a·b on this thread (`accumulate`), `out` row-major and dense.
pub(crate) fn matmul_here(out: &mut [f32], a: Matrix, b: Matrix, scale: f32, accumulate: bool) {
    assert_eq!(out.len(), a.rows * b.cols, "output of the product's size");
    // SAFETY: `out` holds the whole product, initialised.
    unsafe { gemm_rows(out.as_mut_ptr(), b.cols, a, b, accumulate, scale) }
}

/// gemm's `dst = [dst +] scale·a·b` on this thread.
///
/// # Safety
/// As [`gemm_into`].
unsafe fn gemm_rows(
    dst: *mut f32,
    dst_row_stride: usize,
    a: Matrix,
    b: Matrix,
    read_dst: bool,
    scale: f32,
) {
    assert_eq!(
        a.cols, b.rows,
        "matrix product of {}×{} by {}×{}",
        a.rows, a.cols, b.rows, b.cols
    );
    flush::this_thread();
    let stride = |s: usize| isize::try_from(s).expect("matrix too large");
    // SAFETY: `a` and `b` lie in their slices (checked when made), `dst` as the caller says.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            stride(dst_row_stride),
            read_dst,
            a.data.as_ptr(),
            stride(a.strides.1),
            stride(a.strides.0),
            b.data.as_ptr(),
            stride(b.strides.1),
            stride(b.strides.0),
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The instruction set of the CPU device's matrix products here, and its f32 FMA lanes: gemm
/// picks its kernels at run time: AVX-512 where the CPU has x86-64-v4 (its `x86-v4` feature, which
/// Cargo.toml enables on x86-64), else AVX2 + FMA.
pub fn gemm_isa() -> (&'static str, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl")
        {
            return ("AVX-512 (x86-64-v4)", 16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return ("AVX2 + FMA (x86-64-v3)", 8);
        }
        ("SSE2", 4)
    }
    #[cfg(target_arch = "aarch64")]
    return ("NEON", 4);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    ("scalar", 1)
}

/// Multiply-adds from which a product is split over the threads (Burn flex's threshold).
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// The fewest rows of a product worth a thread of their own.
const MIN_SHARE_ROWS: usize = 32;

/// The fewest elements worth a thread of their own.
const CPU_CHUNK: usize = 1 << 16;

/// Elements a CPU kernel computes together (a multiple of 4: τ comes in quads): independent
/// lanes let the CPU overlap their dependency chains (Philox's multiplies above all) and the
/// compiler vectorise them.
pub(crate) const LANES: usize = 32;

/// `lanes!(l in N => expr)`: the array of `expr` for `l` in 0..N, written as a plain loop. Kernel
/// code uses it instead of `std::array::from_fn`, whose closure LLVM may leave out of line, and
/// so out of the AVX2 copy that [`simd`] compiles.
macro_rules! lanes {
    ($l:ident in $n:expr => $e:expr) => {{
        let mut out = [Default::default(); $n];
        for $l in 0..$n {
            out[$l] = $e;
        }
        out
    }};
}
pub(crate) use lanes;

/// The element of lane `l` of the block at `i0`, clamped to the last of `n` (lanes past the end
/// compute a throwaway copy of it).
pub(crate) fn lane(i0: usize, l: usize, n: usize) -> usize {
    (i0 + l).min(n - 1)
}

/// The [`LANES`] values of `v` from `i0`, the tail padded with its last (as [`lane`] does):
/// a plain copy for whole blocks, so the lanes' arithmetic vectorises.
#[inline(always)]
pub(crate) fn block(v: &[f32], i0: usize) -> [f32; LANES] {
    match v.get(i0..i0 + LANES) {
        Some(whole) => whole.try_into().expect("LANES values"),
        None => std::array::from_fn(|l| v[lane(i0, l, v.len())]),
    }
}

/// Σ term(inputs' values at i) over i, in eight running sums (one AVX register) so that the
/// loop vectorises: a single f32 sum is one long chain of dependent adds.
#[inline(always)]
pub(crate) fn sum_by_lanes<const N: usize>(
    inputs: [&[f32]; N],
    term: impl Fn([f32; N]) -> f32,
) -> f32 {
    let len = inputs[0].len();
    assert!(
        inputs.iter().all(|v| v.len() == len),
        "inputs of one length"
    );
    let at = |i: usize| {
        let mut values = [0.0f32; N];
        for k in 0..N {
            values[k] = inputs[k][i];
        }
        values
    };
    let mut acc = [0.0f32; 8];
    let whole = len - len % 8;
    for i0 in (0..whole).step_by(8) {
        for (l, acc) in acc.iter_mut().enumerate() {
            *acc += term(at(i0 + l));
        }
    }
    let tail: f32 = (whole..len).map(|i| term(at(i))).sum();
    acc.iter().sum::<f32>() + tail
}

/// The largest of `values` (−∞ when empty), over eight running maxima.
#[inline(always)]
pub(crate) fn max_by_lanes(values: &[f32]) -> f32 {
    let mut top = [f32::NEG_INFINITY; 8];
    let blocks = values.chunks_exact(8);
    let tail = blocks.remainder().iter().copied();
    for block in blocks {
        for (t, &v) in top.iter_mut().zip(block) {
            *t = t.max(v);
        }
    }
    tail.chain(top).fold(f32::NEG_INFINITY, f32::max)
}

/// e^x in f32 for the CPU kernels, without branches or library calls so that a block's lanes
/// vectorise: x = k·ln 2 + r (Cody–Waite, k rounded by the 1.5·2²³ trick), e^r from Cephes'
/// expf polynomial, 2^k from the exponent bits. Within 2 ulp of e^x on [−87, 88] (x is clamped
/// there; tests/kernels/pac_kernels.rs sweeps it against f64).
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    const LN_2_HI: f32 = 0.693359375;
    const LN_2_LO: f32 = -2.12194440e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    // k as an integer from the mantissa bits that ROUND left it in: `k as i32` would saturate
    // and test for NaN lane by lane, out of the vector registers.
    let k_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - k * LN_2_HI - k * LN_2_LO;
    let mut y = 1.9875691500e-4;
    y = y * r + 1.3981999507e-3;
    y = y * r + 8.3334519073e-3;
    y = y * r + 4.1665795894e-2;
    y = y * r + 1.6666665459e-1;
    y = y * r + 5.0000001201e-1;
    let e_r = y * (r * r) + r + 1.0;
    e_r * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// e^y − 1 in f32, as shaders/noise_adam.wgsl computes it (Taylor to y⁸ for |y| < 0.5, exact
/// to a few ulp where e^y − 1 cancels; exactly 0 at y = 0), with [`exp_f32`] elsewhere.
#[inline(always)]
pub fn expm1_f32(y: f32) -> f32 {
    let far = exp_f32(y) - 1.0;
    if y.abs() < 0.5 {
        y + taylor_tail(y)
    } else {
        far
    }
}

/// e^y − 1 − y in f32, as shaders/kl.wgsl computes it: the same Taylor series without its
/// first term for |y| < 0.5 (no cancellation), [`exp_f32`] elsewhere.
#[inline(always)]
pub(crate) fn exmx_f32(y: f32) -> f32 {
    let far = exp_f32(y) - 1.0 - y;
    if y.abs() < 0.5 { taylor_tail(y) } else { far }
}

/// [`expm1_f32`] (`minus_y` false) or [`exmx_f32`] (true) of a block, skipping the exponential
/// where every lane takes the Taylor branch (the common case: p stays near b_j); the same bits.
#[inline(always)]
pub(crate) fn expm1_block(y: &[f32; LANES], minus_y: bool) -> [f32; LANES] {
    let near = y.iter().all(|v| v.abs() < 0.5);
    lanes!(l in LANES => match (near, minus_y) {
        (true, false) => y[l] + taylor_tail(y[l]),
        (true, true) => taylor_tail(y[l]),
        (false, false) => expm1_f32(y[l]),
        (false, true) => exmx_f32(y[l]),
    })
}

/// y²/2! + y³/3! + … + y⁸/8!
#[inline(always)]
fn taylor_tail(y: f32) -> f32 {
    y * y
        * (0.5
            + y * (1.0 / 6.0
                + y * (1.0 / 24.0
                    + y * (1.0 / 120.0
                        + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0)))))))
}

/// (rows, values per row) of a tensor of `shape` taken along its last dimension.
pub(crate) fn rows(shape: &Shape) -> (usize, usize) {
    let len = shape.as_slice().last().copied().unwrap_or(1);
    (shape.num_elements() / len.max(1), len)
}

/// A CPU kernel with `K` outputs, computed a block of [`LANES`] elements at a time.
pub(crate) trait Blocks<const K: usize>: Sync {
    /// The outputs of the elements `i0..i0 + LANES` (lanes past the end are thrown away).
    fn block(&self, i0: usize) -> [[f32; LANES]; K];
}

/// A CPU kernel that updates `K` buffers of one length in place, a block of [`LANES`] at a time.
pub(crate) trait InPlace<const K: usize>: Sync {
    /// Replaces the elements `i0..i0 + len` of each buffer, given as `parts` (len ≤ [`LANES`]),
    /// by their new values.
    fn update(&self, i0: usize, parts: [&mut [f32]; K]);
}

/// A CPU kernel that sums three terms over the elements, a block of [`LANES`] at a time.
pub(crate) trait BlockSums: Sync {
    /// The sums over the `len` elements from `i0`.
    fn sums(&self, i0: usize, len: usize) -> [f64; 3];
}

/// A CPU kernel computed a row at a time, with `K` outputs.
pub(crate) trait Rows<const K: usize>: Sync {
    /// Fills each output's row `r`.
    fn row(&self, r: usize, out: [&mut [f32]; K]);
}

/// A CPU kernel that sums a vector over rows.
pub(crate) trait RowSums: Sync {
    /// Adds row `r`'s terms to `acc`.
    fn add_row(&self, r: usize, acc: &mut [f64]);
}

/// The `n` values of each of `K` outputs of `kernel`, over the CPU's threads.
pub(crate) fn par_map<const K: usize>(n: usize, kernel: &impl Blocks<K>) -> [Vec<f32>; K] {
    let mut out: [Vec<f32>; K] = std::array::from_fn(|_| Vec::with_capacity(n));
    par_fill(
        out.each_mut().map(|v| &mut v.spare_capacity_mut()[..n]),
        kernel,
    );
    for v in &mut out {
        // SAFETY: par_fill wrote all n values.
        unsafe { v.set_len(n) };
    }
    out
}

/// Writes every value of the `K` outputs (of one length) of `kernel`, over the CPU's threads;
/// the outputs need not be initialised.
pub(crate) fn par_fill<const K: usize>(out: [&mut [MaybeUninit<f32>]; K], kernel: &impl Blocks<K>) {
    par_chunks(out, |start, parts| {
        simd(Fill {
            kernel,
            start,
            parts,
        })
    });
}

/// Every element of the `K` buffers (of one length) updated in place by `kernel`, over the
/// CPU's threads.
pub(crate) fn par_in_place<const K: usize>(parts: [&mut [f32]; K], kernel: &impl InPlace<K>) {
    par_chunks(parts, |start, parts| {
        simd(Update {
            kernel,
            start,
            parts,
        })
    });
}

/// `job(start, parts)` on each chunk of the `K` buffers (of one length), a thread per chunk;
/// a single chunk runs on this thread.
fn par_chunks<T: Send, const K: usize>(
    parts: [&mut [T]; K],
    job: impl Fn(usize, [&mut [T]; K]) + Sync,
) {
    let n = parts[0].len();
    assert!(parts.iter().all(|p| p.len() == n), "buffers of one length");
    let chunk = chunk_len(n).next_multiple_of(LANES);
    if chunk >= n {
        return job(0, parts);
    }
    std::thread::scope(|scope| {
        let mut chunks = parts.map(|v| v.chunks_mut(chunk));
        let job = &job;
        for c in 0..n.div_ceil(chunk) {
            let parts = chunks
                .each_mut()
                .map(|it| it.next().expect("one chunk per buffer"));
            flush::spawn(scope, move || job(c * chunk, parts));
        }
    });
}

/// Σ of `kernel`'s sums over 0..n, in f64, over the CPU's threads.
pub(crate) fn par_sum(n: usize, kernel: &impl BlockSums) -> [f64; 3] {
    let chunk = chunk_len(n).next_multiple_of(LANES);
    if chunk >= n {
        return simd(Sum {
            kernel,
            range: 0..n,
        });
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..n.div_ceil(chunk))
            .map(|c| {
                let range = c * chunk..n.min((c + 1) * chunk);
                flush::spawn(scope, move || simd(Sum { kernel, range }))
            })
            .collect();
        parts
            .into_iter()
            .map(|part| part.join().expect("CPU kernel thread panicked"))
            .fold([0.0; 3], add3)
    })
}

fn add3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// Every row of `rows` of each of `K` outputs from `kernel`, over the CPU's threads; output `k`
/// holds `rows` rows of `out[k].len() / rows` values.
pub(crate) fn par_rows<const K: usize>(rows: usize, out: [&mut [f32]; K], kernel: &impl Rows<K>) {
    let widths = out.each_ref().map(|o| o.len() / rows.max(1));
    let rows_per_chunk = chunk_len(out[0].len()).div_ceil(widths[0].max(1)).max(1);
    if rows_per_chunk >= rows {
        simd(FillRows {
            kernel,
            widths,
            first: 0,
            parts: out,
        });
        return;
    }
    std::thread::scope(|scope| {
        let mut parts = out
            .into_iter()
            .zip(widths)
            .map(|(o, w)| o.chunks_mut(rows_per_chunk * w))
            .collect::<Vec<_>>();
        for c in 0..rows.div_ceil(rows_per_chunk) {
            let part: [&mut [f32]; K] =
                std::array::from_fn(|k| parts[k].next().expect("one chunk per output"));
            let first = c * rows_per_chunk;
            flush::spawn(scope, move || {
                simd(FillRows {
                    kernel,
                    widths,
                    first,
                    parts: part,
                })
            });
        }
    });
}

/// The sums over all `rows` of `kernel`'s `width` terms, in f64, over the CPU's threads.
pub(crate) fn par_row_sums(rows: usize, width: usize, kernel: &impl RowSums) -> Vec<f64> {
    let rows_per_chunk = chunk_len(rows * width).div_ceil(width.max(1)).max(1);
    let chunks: Vec<_> = (0..rows)
        .step_by(rows_per_chunk)
        .map(|first| first..rows.min(first + rows_per_chunk))
        .collect();
    let sum = |range| {
        simd(FoldRows {
            kernel,
            width,
            range,
        })
    };
    let parts: Vec<Vec<f64>> = if chunks.len() <= 1 {
        vec![sum(0..rows)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|range| flush::spawn(scope, move || sum(range)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("CPU kernel thread panicked"))
                .collect()
        })
    };
    let mut total = vec![0.0; width];
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// One thread's share of a kernel: what [`simd`] compiles twice.
trait Job {
    type Out;
    fn run(self) -> Self::Out;
}

struct Fill<'a, const K: usize, B> {
    kernel: &'a B,
    start: usize,
    parts: [&'a mut [MaybeUninit<f32>]; K],
}

impl<const K: usize, B: Blocks<K>> Job for Fill<'_, K, B> {
    type Out = ();

    #[inline(always)]
    fn run(mut self) {
        let len = self.parts[0].len();
        for i in (0..len).step_by(LANES) {
            let values = self.kernel.block(self.start + i);
            let end = (i + LANES).min(len);
            for (part, block) in self.parts.iter_mut().zip(&values) {
                for (to, &value) in part[i..end].iter_mut().zip(block) {
                    to.write(value);
                }
            }
        }
    }
}

struct Sum<'a, B> {
    kernel: &'a B,
    range: std::ops::Range<usize>,
}

impl<B: BlockSums> Job for Sum<'_, B> {
    type Out = [f64; 3];

    #[inline(always)]
    fn run(self) -> [f64; 3] {
        let mut total = [0.0; 3];
        for i0 in self.range.clone().step_by(LANES) {
            total = add3(total, self.kernel.sums(i0, LANES.min(self.range.end - i0)));
        }
        total
    }
}

struct FillRows<'a, const K: usize, B> {
    kernel: &'a B,
    widths: [usize; K],
    first: usize,
    parts: [&'a mut [f32]; K],
}

impl<const K: usize, B: Rows<K>> Job for FillRows<'_, K, B> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let rows = self.parts[0].len() / self.widths[0].max(1);
        let mut rest = self.parts;
        for r in 0..rows {
            let mut row: [&mut [f32]; K] = std::array::from_fn(|_| Default::default());
            for k in 0..K {
                let (head, tail) = std::mem::take(&mut rest[k]).split_at_mut(self.widths[k]);
                row[k] = head;
                rest[k] = tail;
            }
            self.kernel.row(self.first + r, row);
        }
    }
}

struct Update<'a, const K: usize, B> {
    kernel: &'a B,
    start: usize,
    parts: [&'a mut [f32]; K],
}

impl<const K: usize, B: InPlace<K>> Job for Update<'_, K, B> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let len = self.parts[0].len();
        let mut rest = self.parts;
        for i in (0..len).step_by(LANES) {
            let take = LANES.min(len - i);
            let block = rest.each_mut().map(|r| {
                let (head, tail) = std::mem::take(r).split_at_mut(take);
                *r = tail;
                head
            });
            self.kernel.update(self.start + i, block);
        }
    }
}

struct FoldRows<'a, B> {
    kernel: &'a B,
    width: usize,
    range: std::ops::Range<usize>,
}

impl<B: RowSums> Job for FoldRows<'_, B> {
    type Out = Vec<f64>;

    #[inline(always)]
    fn run(self) -> Vec<f64> {
        let mut acc = vec![0.0; self.width];
        for r in self.range {
            self.kernel.add_row(r, &mut acc);
        }
        acc
    }
}

/// `job.run()`, compiled for AVX2 and FMA where the CPU has them, else as built (portable
/// x86-64: SSE2): a kernel's blocks of lanes then take 8 f32 per instruction instead of 4.
/// Every kernel method is `#[inline(always)]` so that it is compiled into both. The results
/// are the same bits either way: Rust never fuses a multiply and an add by itself.
fn simd<J: Job>(job: J) -> J::Out {
    flush::this_thread();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has both features, checked just above.
        return unsafe { avx2_fma(job) };
    }
    job.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_fma<J: Job>(job: J) -> J::Out {
    job.run()
}

fn chunk_len(n: usize) -> usize {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    n.div_ceil(threads).max(CPU_CHUNK)
}
