//! f32 matrix products on the CPU through the system's BLAS (`cblas_sgemm`), loaded at run time.
//!
//! burn's CPU backend (flex) multiplies with the pure-Rust gemm crate. On the 2-core AVX-512
//! CI machine that reached about 90 GFLOP/s on the model's shapes, where Debian's OpenBLAS
//! 0.3.21 (`libopenblas0`, its Cooperlake kernels) reached 180–206 GFLOP/s on the same shapes
//! (`[400, 576] × [576, 1536]`, `[300, 1536] × [1536, 576]`, `[300, 576] × [576, 192]`, 1024³)
//! and PyTorch's MKL 90–200. So when one of [`LIBRARIES`] can be opened, every f32 product
//! that [`super::linear`] takes on `cpu` is one `cblas_sgemm` call, and its gradients under
//! autodiff are two more:
//!
//! ```text
//! forward    Y = X · W                 [m, n] = [m, k] · [k, n]
//! backward   ∂/∂X = G · Wᵀ             [m, k]
//!            ∂/∂W = Xᵀ · G             [k, n]
//! ```
//!
//! Nothing is linked at build time, so the same binary runs where no BLAS is installed, with
//! flex's gemm. `GRAM_BLAS=off` keeps gemm even where a BLAS is found (to compare the two, or
//! to rule the library out). Transposed views are passed as BLAS transposes, not copied.

use crate::extension::{primitive, record};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchKindConversion, DispatchTensor, Flex, backend_extension,
};
use burn::tensor::{DType, Shape, Tensor};
use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// The libraries tried, in order: OpenBLAS (Linux, Windows, Homebrew on macOS) and Apple's
/// Accelerate framework.
pub const LIBRARIES: &[&str] = &[
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblas.dylib",
    "/System/Library/Frameworks/Accelerate.framework/Accelerate",
    "libopenblas.dll",
];

/// CBLAS's `enum CBLAS_ORDER` / `CBLAS_TRANSPOSE` values.
const ROW_MAJOR: c_int = 101;
const NO_TRANSPOSE: c_int = 111;
const TRANSPOSE: c_int = 112;

/// `cblas_sgemm`: `C ← α·op(A)·op(B) + β·C` (LP64: 32-bit integer sizes).
type Sgemm = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

/// OpenBLAS's `openblas_set_num_threads` / `openblas_get_num_threads`: the threads each
/// product may use, process-wide.
type SetThreads = unsafe extern "C" fn(threads: c_int);
type GetThreads = unsafe extern "C" fn() -> c_int;
/// OpenBLAS's `openblas_get_corename`: the CPU its kernels were chosen for (a static string).
type CoreName = unsafe extern "C" fn() -> *const std::os::raw::c_char;

/// A loaded BLAS: its `cblas_sgemm`, OpenBLAS's thread count where it can be set, the library
/// it came from (kept open) and, for OpenBLAS, the CPU its kernels are for.
struct Library {
    sgemm: Sgemm,
    threads: Option<ThreadCount>,
    name: &'static str,
    kernels: Option<String>,
    _library: libloading::Library,
}

/// OpenBLAS's thread count, which is process-wide, shared by two kinds of product: the CPU
/// attention's many small ones, one thread each ([`one_thread_per_product`]), and every other
/// product, on the library's own count. With some of OpenBLAS's kernels (the Haswell ones, which
/// AVX2-only and Zen 1–3 CPUs get) a product's rounding depends on its thread count:
/// `[40, 576] · [576, 1536]` differs by about 7e-5 between one thread and two. So the count one
/// product runs with must never be the one another thread just set: products of one kind run side
/// by side, and a product of the other kind waits until they are done. Results then do not depend
/// on what else the process is running (concurrent judges, parallel tests).
struct ThreadCount {
    set: SetThreads,
    /// The library's own count, read when it was loaded.
    library: c_int,
    /// The kind of product running (`true`: one thread each) and how many callers run it.
    inside: Mutex<(bool, usize)>,
    left: Condvar,
}

impl ThreadCount {
    /// Waits until no product of the other kind is running, sets the count for `one_each`, and
    /// holds it until the returned guard drops.
    fn enter(&'static self, one_each: bool) -> Inside {
        let mut inside = (self.inside.lock()).unwrap_or_else(PoisonError::into_inner);
        while inside.1 > 0 && inside.0 != one_each {
            inside = (self.left.wait(inside)).unwrap_or_else(PoisonError::into_inner);
        }
        if inside.0 != one_each {
            // SAFETY: OpenBLAS's thread-count call takes a plain int.
            unsafe { (self.set)(if one_each { 1 } else { self.library }) };
            inside.0 = one_each;
        }
        inside.1 += 1;
        Inside(self)
    }
}

/// A caller inside [`ThreadCount::enter`]; leaves on drop, so a panic leaves too.
struct Inside(&'static ThreadCount);

impl Drop for Inside {
    fn drop(&mut self) {
        let mut inside = (self.0.inside.lock()).unwrap_or_else(PoisonError::into_inner);
        inside.1 -= 1;
        if inside.1 == 0 {
            self.0.left.notify_all();
        }
    }
}

/// The BLAS this process uses, opened on first use; `None` without one (or with
/// `GRAM_BLAS=off`).
fn library() -> Option<&'static Library> {
    static LIBRARY: OnceLock<Option<Library>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            if std::env::var("GRAM_BLAS").is_ok_and(|v| v == "off") {
                return None;
            }
            LIBRARIES.iter().find_map(|&name| {
                // SAFETY: loading a BLAS runs only its initialisers, and `cblas_sgemm` has the
                // signature above in every CBLAS (LP64) build.
                unsafe {
                    let library = libloading::Library::new(name).ok()?;
                    let sgemm = *library.get::<Sgemm>(b"cblas_sgemm\0").ok()?;
                    let set = library.get::<SetThreads>(b"openblas_set_num_threads\0");
                    let get = library.get::<GetThreads>(b"openblas_get_num_threads\0");
                    let threads = set.ok().zip(get.ok()).map(|(set, get)| ThreadCount {
                        set: *set,
                        library: get(),
                        inside: Mutex::new((false, 0)),
                        left: Condvar::new(),
                    });
                    let core = library.get::<CoreName>(b"openblas_get_corename\0").ok();
                    let kernels = core.map(|core| core()).filter(|p| !p.is_null());
                    // SAFETY: a NUL-terminated static string from OpenBLAS.
                    let kernels =
                        kernels.map(|p| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
                    Some(Library {
                        sgemm,
                        threads,
                        name,
                        kernels,
                        _library: library,
                    })
                }
            })
        })
        .as_ref()
}

/// The library f32 products on `cpu` go to, if one was found (e.g. `libopenblas.so.0`).
pub fn name() -> Option<&'static str> {
    library().map(|l| l.name)
}

/// The CPU whose kernels OpenBLAS runs (e.g. `Cooperlake`, `Haswell`), where the library
/// says: its own choice for this CPU, or the one `OPENBLAS_CORETYPE` names.
pub fn kernels() -> Option<&'static str> {
    library().and_then(|l| l.kernels.as_deref())
}

/// Whether [`super::linear`] gives `x · w` to the BLAS: both f32, on `cpu`, a BLAS loaded, and
/// sizes within its 32-bit integers.
pub fn takes<const D: usize>(x: &Tensor<D>, w: &Tensor<2>) -> bool {
    let fits = |n: usize| c_int::try_from(n).is_ok();
    let rows: usize = x.dims()[..D - 1].iter().product();
    let [k, n] = w.dims();
    x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && super::on_flex(&x.device())
        && fits(rows * k.max(n))
        && fits(k * n)
        && library().is_some()
}

/// Products this thread has given the BLAS so far, forward and backward passes together (a
/// test compares it before and after its own products, so a silent fallback to gemm fails it).
pub fn calls_on_this_thread() -> u64 {
    CALLS.with(Cell::get)
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// `a · b` for `a` `[m, k]` and `b` `[k, n]`, f32 on `cpu` ([`takes`] said yes), with or
/// without autodiff.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as BlasBackend>::blas_matmul(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// The BLAS product as a burn backend extension: forward on flex, forward and backward on
/// `Autodiff<Flex>`.
#[backend_extension(Autodiff, Flex)]
pub trait BlasBackend: Backend {
    /// `[m, n]`: `a · b` for f32 `a` `[m, k]` and `b` `[k, n]`.
    fn blas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl BlasBackend for Flex {
    fn blas_matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        sgemm(&a, &b)
    }
}

#[derive(Debug)]
struct MatmulBackward;

impl<B: Backend> Backward<B, 2> for MatmulBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// The two factors.
    type State = (Tensor<2>, Tensor<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [a_node, b_node] = ops.parents;
        let g = Tensor::<2>::from_primitive::<B>(grads.consume::<B>(&ops.node));
        let (a, b) = ops.state;
        if let Some(node) = a_node {
            let d_a = matmul(g.clone(), b.transpose());
            grads.register::<B>(node.id, primitive::<B, 2>(d_a));
        }
        if let Some(node) = b_node {
            let d_b = matmul(a.transpose(), g);
            grads.register::<B>(node.id, primitive::<B, 2>(d_b));
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> BlasBackend for Autodiff<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    fn blas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        let a = Tensor::<2>::from_primitive::<B>(a);
        let b = Tensor::<2>::from_primitive::<B>(b);
        let y = primitive::<B, 2>(matmul(a.clone(), b.clone()));
        record::<B, C, _, _>(MatmulBackward, [a_node, b_node], (a, b), y)
    }
}

/// How a `[rows, cols]` factor is handed to CBLAS (row-major): a contiguous-row matrix as is,
/// a transposed view (contiguous columns) as the transpose of its storage, anything else copied
/// to contiguous first. Returns the tensor to read, whether it is read transposed and the
/// leading dimension.
fn operand(t: &FlexTensor) -> (FlexTensor, bool, usize) {
    let layout = t.layout();
    let (rows, cols) = (layout.shape()[0], layout.shape()[1]);
    let (row_stride, col_stride) = (layout.strides()[0], layout.strides()[1]);
    if col_stride == 1 && (rows == 1 || row_stride >= cols as isize) {
        let lead = if rows == 1 { cols } else { row_stride as usize };
        return (t.clone(), false, lead);
    }
    if row_stride == 1 && (cols == 1 || col_stride >= rows as isize) {
        let lead = if cols == 1 { rows } else { col_stride as usize };
        return (t.clone(), true, lead);
    }
    (t.to_contiguous(), false, cols)
}

/// Runs `work` with every product on one thread each, so that `work` can run many small
/// products side by side on its own threads (the CPU attention's heads) instead of each one
/// spreading over the BLAS's threads; `None` (and `work` not run) where the library cannot be
/// told (OpenBLAS can; Accelerate has no such call). Other threads' products on the library's
/// own count wait until `work` is done ([`ThreadCount`]).
pub(super) fn one_thread_per_product<R>(work: impl FnOnce() -> R) -> Option<R> {
    let _inside = library()?.threads.as_ref()?.enter(true);
    Some(work())
}

/// `c ← alpha · op(a) · op(b) + beta · c` for row-major slices, one `cblas_sgemm` call: `op(a)`
/// `[m, k]` (`a` stored `[m, k]`, or `[k, m]` when `a_transposed`), `op(b)` `[k, n]` (`b` stored
/// `[k, n]`, or `[n, k]` when `b_transposed`), each with its leading dimension; `c` `[m, n]`.
/// Every product here goes through it: the projections' ([`sgemm`]) and the CPU attention's.
#[allow(clippy::type_complexity)]
pub(super) fn sgemm_slices(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda, a_transposed): (&[f32], usize, bool),
    (b, ldb, b_transposed): (&[f32], usize, bool),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
) {
    let library = library().expect("blas product called without a BLAS (see `takes`)");
    let stored = |transposed: bool, rows: usize, cols: usize| {
        if transposed {
            (cols, rows)
        } else {
            (rows, cols)
        }
    };
    let ((a_rows, a_cols), (b_rows, b_cols)) =
        (stored(a_transposed, m, k), stored(b_transposed, k, n));
    // Every row the call reads or writes lies inside its slice.
    let spans = |rows: usize, cols: usize, lead: usize| rows.saturating_sub(1) * lead + cols;
    assert!(
        lda >= a_cols && ldb >= b_cols && ldc >= n,
        "blas product: leading dimensions"
    );
    assert!(
        a.len() >= spans(a_rows, a_cols, lda) && b.len() >= spans(b_rows, b_cols, ldb),
        "blas product: factors shorter than their shapes"
    );
    assert!(
        c.len() >= spans(m, n, ldc),
        "blas product: output shorter than its shape"
    );
    let fits = |x: usize| c_int::try_from(x).is_ok();
    assert!(
        [m, n, k, lda, ldb, ldc].into_iter().all(fits),
        "blas product: sizes beyond a C int"
    );
    if m == 0 || n == 0 {
        return;
    }
    let flag = |transposed: bool| if transposed { TRANSPOSE } else { NO_TRANSPOSE };
    // SAFETY: the asserts above keep every element the call touches inside the slices.
    unsafe {
        (library.sgemm)(
            ROW_MAJOR,
            flag(a_transposed),
            flag(b_transposed),
            m as c_int,
            n as c_int,
            k as c_int,
            alpha,
            a.as_ptr(),
            lda.max(1) as c_int,
            b.as_ptr(),
            ldb.max(1) as c_int,
            beta,
            c.as_mut_ptr(),
            ldc.max(1) as c_int,
        );
    }
    CALLS.with(|calls| calls.set(calls.get() + 1));
}

/// `a · b` by one `cblas_sgemm` call ([`sgemm_slices`]) into a new `[m, n]` tensor.
fn sgemm(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (m, k) = (a.layout().shape()[0], a.layout().shape()[1]);
    let n = b.layout().shape()[1];
    assert_eq!(
        b.layout().shape()[0],
        k,
        "blas matmul: inner dimensions differ"
    );
    assert!(
        a.dtype() == DType::F32 && b.dtype() == DType::F32,
        "blas matmul: f32 only"
    );
    if m == 0 || n == 0 || k == 0 {
        return FlexTensor::zeros(Shape::from(vec![m, n]), DType::F32); // the empty sum
    }
    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
    let ((a, a_transposed, lda), (b, b_transposed, ldb)) = (operand(a), operand(b));
    let _inside = library()
        .and_then(|l| l.threads.as_ref())
        .map(|t| t.enter(false));
    sgemm_slices(
        (m, n, k),
        1.0,
        (from_start(&a), lda, a_transposed),
        (from_start(&b), ldb, b_transposed),
        0.0,
        (out.storage_mut::<f32>(), n),
    );
    out
}

/// A flex tensor's storage from its first element on (a strided view reads within it).
fn from_start(x: &FlexTensor) -> &[f32] {
    &x.storage::<f32>()[x.layout().start_offset()..]
}
