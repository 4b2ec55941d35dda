//! The PyO3 module `fedcodec._fedcodec`: validates, converts, releases the GIL, calls the core.
// PyO3 hands extracted arguments over by value; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value)]

use numpy::npyffi::{npy_intp, PY_ARRAY_API};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyReadonlyArray1, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::accumulator::Accumulator as CoreAccumulator;
use crate::codecs::codec::Param;
use crate::error::CodecError as CoreError;
use crate::frame::DEFAULT_MAX_ELEMENTS;
use crate::pipeline::{self, ParsedFrame};
use crate::spec::{Spec, Stage};

create_exception!(
    fedcodec,
    CodecError,
    PyValueError,
    "Bad codec parameters, bad input or a bad frame."
);
create_exception!(
    fedcodec,
    FrameError,
    CodecError,
    "A frame is truncated, malformed, oversized or forged."
);
create_exception!(
    fedcodec,
    ChecksumError,
    FrameError,
    "A frame's bytes do not match its crc32c."
);

/// The single place where core errors become Python exceptions.
impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let msg = err.to_string();
        match err {
            CoreError::InvalidParam(_) | CoreError::InvalidInput(_) => CodecError::new_err(msg),
            CoreError::Frame(_) => FrameError::new_err(msg),
            CoreError::Checksum { .. } => ChecksumError::new_err(msg),
            CoreError::Alloc(_) => PyMemoryError::new_err(msg),
        }
    }
}

fn contiguous<'a>(x: &'a PyReadonlyArrayDyn<'_, f32>) -> PyResult<Cow<'a, [f32]>> {
    if let Ok(s) = x.as_slice() {
        return Ok(Cow::Borrowed(s));
    }
    if x.is_c_contiguous() {
        // C-contiguous but not aligned for float32 (a view at an odd byte offset): copy it.
        return Ok(Cow::Owned(x.as_array().iter().copied().collect()));
    }
    Err(CodecError::new_err("array must be C-contiguous float32"))
}

fn shape_of(x: &PyReadonlyArrayDyn<'_, f32>) -> Vec<u64> {
    x.shape().iter().map(|&d| d as u64).collect()
}

fn to_usize_shape(shape: &[u64]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

/// A compiled codec pipeline (parsed from a spec string once).
#[pyclass(frozen, module = "fedcodec._fedcodec")]
struct Codec {
    spec: Spec,
}

#[pymethods]
impl Codec {
    #[new]
    fn new(spec: &str) -> PyResult<Self> {
        Ok(Self {
            spec: Spec::parse(spec)?,
        })
    }

    /// Canonical spec string.
    #[getter]
    fn spec(&self) -> String {
        self.spec.to_string()
    }

    /// Stage parameters as dicts, for building the Python codec objects.
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.spec
            .stages()
            .iter()
            .map(|s| stage_dict(py, s))
            .collect()
    }

    #[pyo3(signature = (x, seed=0))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let shape = shape_of(&x);
        let data = contiguous(&x)?;
        let spec = &self.spec;
        let plan = py.detach(|| pipeline::plan(spec, &data, &shape, seed))?;
        // The kernel writes straight into the bytes object: no second copy of the frame.
        fresh_bytes(py, plan.frame_len(), |buf| {
            py.detach(|| plan.write_uninit(buf)).map_err(PyErr::from)
        })
    }

    /// Encodes x + residual and leaves the part the codec lost in `residual` (error feedback).
    #[pyo3(signature = (x, residual, seed=0))]
    fn encode_with_feedback<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        mut residual: PyReadwriteArrayDyn<'py, f32>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let shape = shape_of(&x);
        let data = contiguous(&x)?;
        if residual.shape() != x.shape() {
            return Err(CodecError::new_err(format!(
                "residual has shape {:?}, input has {:?}",
                residual.shape(),
                x.shape()
            )));
        }
        let res = residual
            .as_slice_mut()
            .map_err(|_| CodecError::new_err("residual must be C-contiguous float32"))?;
        let spec = &self.spec;
        let frame = py.detach(|| -> Result<Vec<u8>, CoreError> {
            let mut corrected: Vec<f32> = data.iter().zip(res.iter()).map(|(a, b)| a + b).collect();
            let frame = pipeline::encode(spec, &corrected, &shape, seed)?;
            ParsedFrame::parse(&frame, u64::MAX)?.add_into(-1.0, &mut corrected)?;
            res.copy_from_slice(&corrected);
            Ok(frame)
        })?;
        Ok(PyBytes::new(py, &frame))
    }

    fn __repr__(&self) -> String {
        format!("Codec('{}')", self.spec)
    }
}

fn stage_dict<'py>(py: Python<'py>, stage: &Stage) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match stage {
        Stage::Terminal(codec) => {
            let (name, params) = codec.describe();
            d.set_item("name", name)?;
            for (key, value) in params {
                match value {
                    Param::Int(v) => d.set_item(key, v)?,
                    Param::Float(v) => d.set_item(key, v)?,
                    Param::Bool(v) => d.set_item(key, v)?,
                    Param::Text(v) => d.set_item(key, v)?,
                }
            }
        }
        Stage::TopK { fraction, sampled } => {
            d.set_item("name", "topk")?;
            d.set_item("fraction", fraction)?;
            d.set_item("sampled", sampled)?;
        }
        Stage::RandK { fraction } => {
            d.set_item("name", "randk")?;
            d.set_item("fraction", fraction)?;
        }
    }
    Ok(d)
}

/// A new `bytes` of `len` bytes that `fill` writes. CPython hands it over uninitialized, so a
/// frame's bytes are written once, by the kernel: with `PyBytes::new_with`, which zero-fills
/// first, an 8-bit encode of 10M floats took 6.08 ms on one core and 4.38 ms on two, against 5.14
/// and 3.19 ms now.
fn fresh_bytes(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> PyResult<()>,
) -> PyResult<Bound<'_, PyBytes>> {
    let size = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| CodecError::new_err(format!("a frame of {len} bytes is too large")))?;
    // SAFETY: given a null pointer, CPython returns a new bytes object of `size` bytes whose
    // contents the caller writes, or null with an exception set.
    let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a new, owned reference to a bytes object.
    let bytes = unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked::<PyBytes>() };
    // SAFETY: the object's `len` bytes live as long as `bytes`, no other code has seen the object
    // yet, and `MaybeUninit` claims nothing about their contents. If `fill` fails, the object is
    // dropped unread.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<MaybeUninit<u8>>(), len)
    };
    fill(buf)?;
    Ok(bytes)
}

/// Decodes any frame into a float32 array of the shape it was encoded with, or over `out`.
#[pyfunction]
#[pyo3(signature = (frame, max_elements=DEFAULT_MAX_ELEMENTS, out=None))]
fn decode<'py>(
    py: Python<'py>,
    frame: &[u8],
    max_elements: u64,
    out: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    if let Some(out) = out {
        return decode_over(py, frame, max_elements, out);
    }
    // The headers are read on this thread; the checksum is verified on the pool beside the
    // decode: one wake-up of the pool per call instead of two.
    let parsed = py.detach(|| ParsedFrame::parse_deferring_checksum(frame, max_elements))?;
    // numpy allocates the output (huge pages for large arrays, zeroed lazily by the kernel), the
    // core decodes into it; a failed allocation is numpy's MemoryError, not a panic.
    let out = try_zeros(py, &to_usize_shape(&parsed.header.shape))?;
    {
        let mut view = out.readwrite();
        let slice = view
            .as_slice_mut()
            .map_err(|_| CodecError::new_err("numpy returned a non-contiguous array"))?;
        py.detach(|| parsed.decode_verified_into(frame, slice))?;
    }
    Ok(out)
}

/// `decode(frame, out=array)`: no fresh pages to fault in, so a server or client that decodes
/// every round into the same array runs at the speed of the loop. The frame (checksum included)
/// and the array are checked before the array is touched.
fn decode_over<'py>(
    py: Python<'py>,
    frame: &[u8],
    max_elements: u64,
    out: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let array = match out.cast_into::<PyArrayDyn<f32>>() {
        Ok(array) => array,
        Err(err) => {
            let given = err.into_inner();
            let what = match given.cast::<PyUntypedArray>() {
                Ok(array) => format!("a {} array", array.dtype()),
                Err(_) => given.get_type().name()?.to_string(),
            };
            return Err(CodecError::new_err(format!(
                "out must be a float32 numpy array, got {what}"
            )));
        }
    };
    let parsed = py.detach(|| ParsedFrame::parse(frame, max_elements))?;
    let shape = to_usize_shape(&parsed.header.shape);
    if array.shape() != shape.as_slice() {
        return Err(CodecError::new_err(format!(
            "out has shape {}, the frame holds {}",
            py_shape(array.shape()),
            py_shape(&shape)
        )));
    }
    if !array.is_c_contiguous() {
        return Err(CodecError::new_err("out must be C-contiguous"));
    }
    {
        let mut view = array
            .try_readwrite()
            .map_err(|err| CodecError::new_err(format!("out cannot be written: {err}")))?;
        let slice = view
            .as_slice_mut()
            .map_err(|_| CodecError::new_err("out must be aligned for float32"))?;
        py.detach(|| parsed.overwrite(slice))?;
    }
    Ok(array)
}

/// A shape as Python prints a tuple: `(3,)`, `(2, 3)`.
fn py_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A zeroed C-ordered float32 array of `shape`, or numpy's `MemoryError` when it cannot be
/// allocated (`PyArray::zeros` would panic).
fn try_zeros<'py>(py: Python<'py>, shape: &[usize]) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let mut dims = shape
        .iter()
        .map(|&d| npy_intp::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PyMemoryError::new_err(format!("shape {shape:?} is too large")))?;
    let ndim = std::ffi::c_int::try_from(dims.len())
        .map_err(|_| CodecError::new_err("too many dimensions"))?;
    // SAFETY: `dims` holds `ndim` extents and outlives the call; the descriptor reference is
    // stolen by `PyArray_Zeros`, as numpy's own `PyArray::zeros` does. The result is a new
    // reference to a float32 array, or null with MemoryError set.
    unsafe {
        let ptr = PY_ARRAY_API.PyArray_Zeros(
            py,
            ndim,
            dims.as_mut_ptr(),
            f32::get_dtype(py).into_dtype_ptr(),
            0,
        );
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// What a frame holds, read without decoding the payload.
#[pyfunction]
#[pyo3(signature = (frame, max_elements=DEFAULT_MAX_ELEMENTS))]
fn inspect<'py>(py: Python<'py>, frame: &[u8], max_elements: u64) -> PyResult<Bound<'py, PyDict>> {
    let parsed = ParsedFrame::parse(frame, max_elements)?;
    let d = PyDict::new(py);
    d.set_item("spec", parsed.spec_string())?;
    d.set_item("shape", parsed.header.shape.clone())?;
    d.set_item("n", parsed.header.n)?;
    d.set_item("nbytes", parsed.frame_len)?;
    d.set_item("version", crate::frame::VERSION)?;
    Ok(d)
}

/// Weighted running sum of decoded frames, O(model) memory; safe to share across threads:
/// adds run one at a time, each without the GIL, behind a mutex.
#[pyclass(frozen, module = "fedcodec._fedcodec")]
struct Accumulator {
    inner: Mutex<CoreAccumulator>,
}

impl Accumulator {
    /// The sum, whichever thread holds it; the core never panics, so poisoning carries no broken state.
    fn lock(&self) -> MutexGuard<'_, CoreAccumulator> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bytes of any bytes-like object: `bytes` borrowed, others (`bytearray`, `memoryview`,
/// which another thread could resize while the GIL is released) copied.
fn frame_bytes<'a>(py: Python<'_>, frame: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = frame.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    let buffer = PyBuffer::<u8>::get(frame).map_err(|_| {
        CodecError::new_err(format!(
            "a frame must be bytes-like (bytes, bytearray, memoryview), got {}",
            frame.get_type()
        ))
    })?;
    Ok(Cow::Owned(buffer.to_vec(py)?))
}

#[pymethods]
impl Accumulator {
    #[new]
    fn new(n: usize) -> PyResult<Self> {
        Ok(Self {
            inner: Mutex::new(CoreAccumulator::new(n)?),
        })
    }

    #[pyo3(signature = (frame, weight=1.0))]
    fn add(&self, py: Python<'_>, frame: &Bound<'_, PyAny>, weight: f32) -> PyResult<()> {
        let bytes = frame_bytes(py, frame)?;
        py.detach(|| self.lock().add(&bytes, weight))?;
        Ok(())
    }

    #[pyo3(signature = (x, weight=1.0))]
    fn add_array(
        &self,
        py: Python<'_>,
        x: PyReadonlyArrayDyn<'_, f32>,
        weight: f32,
    ) -> PyResult<()> {
        let data = contiguous(&x)?;
        py.detach(|| self.lock().add_dense(&data, weight))?;
        Ok(())
    }

    fn result<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        let sum = py.detach(|| self.lock().sum().to_vec());
        sum.into_pyarray(py)
    }

    fn mean<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        Ok(py.detach(|| self.lock().mean())?.into_pyarray(py))
    }

    fn reset(&self, py: Python<'_>) {
        py.detach(|| self.lock().reset());
    }

    #[getter]
    fn total_weight(&self, py: Python<'_>) -> f64 {
        py.detach(|| self.lock().total_weight())
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().count())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().len())
    }
}

fn check_fraction(fraction: f64) -> PyResult<()> {
    Stage::RandK { fraction }.validate()?;
    Ok(())
}

fn flat<'a>(x: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    x.as_slice()
        .map_err(|_| CodecError::new_err("array must be C-contiguous float32"))
}

/// Indices of the k largest magnitudes (exact linear-time select, or DGC-style sampled threshold).
#[pyfunction]
#[pyo3(signature = (x, k, sampled=false, seed=0))]
fn topk_indices<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    k: usize,
    sampled: bool,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let data = flat(&x)?;
    if k == 0 || k > data.len() || u32::try_from(data.len()).is_err() {
        return Err(CodecError::new_err(format!(
            "k must be in 1..={} (and n < 2^32), got {k}",
            data.len()
        )));
    }
    let idx = py.detach(|| {
        if sampled {
            crate::topk::topk_sampled(data, k, seed)
        } else {
            crate::topk::topk_exact(data, k)
        }
    });
    Ok(idx.into_pyarray(py))
}

/// Orthonormal fast Walsh–Hadamard transform of a power-of-two-length vector (returns a new array).
#[pyfunction]
fn fwht<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let mut data = flat(&x)?.to_vec();
    if !data.len().is_power_of_two() {
        return Err(CodecError::new_err(format!(
            "fwht needs a power-of-two length, got {}",
            data.len()
        )));
    }
    py.detach(|| crate::hadamard::fwht(&mut data));
    Ok(data.into_pyarray(py))
}

/// Values at a seeded mask's coordinates (partial model sharing: no indices travel).
#[pyfunction]
fn mask_extract<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    fraction: f64,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    check_fraction(fraction)?;
    let data = flat(&x)?;
    let out = py.detach(|| crate::seeded_mask::mask_extract(data, fraction, seed));
    Ok(out.into_pyarray(py))
}

/// Adds `weight` times the values back at a seeded mask's coordinates of `out`.
#[pyfunction]
#[pyo3(signature = (values, out, fraction, seed, weight=1.0))]
fn mask_scatter_add(
    py: Python<'_>,
    values: PyReadonlyArray1<'_, f32>,
    mut out: numpy::PyReadwriteArray1<'_, f32>,
    fraction: f64,
    seed: u64,
    weight: f32,
) -> PyResult<()> {
    check_fraction(fraction)?;
    let vals = flat(&values)?;
    let target = out
        .as_slice_mut()
        .map_err(|_| CodecError::new_err("out must be C-contiguous float32"))?;
    let n = target.len();
    py.detach(|| crate::seeded_mask::mask_scatter_add(vals, n, fraction, seed, weight, target))?;
    Ok(())
}

/// Number of coordinates a seeded mask selects.
#[pyfunction]
fn mask_count(n: usize, fraction: f64, seed: u64) -> PyResult<usize> {
    check_fraction(fraction)?;
    Ok(crate::seeded_mask::mask_count(n, fraction, seed))
}

/// A seeded mask as an LSB-first bitmap.
#[pyfunction]
fn mask_bitmap(py: Python<'_>, n: usize, fraction: f64, seed: u64) -> PyResult<Bound<'_, PyBytes>> {
    check_fraction(fraction)?;
    let bits = py.detach(|| crate::seeded_mask::mask_bitmap(n, fraction, seed))?;
    Ok(PyBytes::new(py, &bits))
}

/// Values where an explicit LSB-first bitmap is set.
#[pyfunction]
fn bitmap_extract<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    bitmap: &[u8],
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let data = flat(&x)?;
    let out = py.detach(|| crate::seeded_mask::bitmap_extract(data, bitmap))?;
    Ok(out.into_pyarray(py))
}

/// Adds `weight` times values back where an explicit bitmap is set.
#[pyfunction]
#[pyo3(signature = (values, bitmap, out, weight=1.0))]
fn bitmap_scatter_add(
    py: Python<'_>,
    values: PyReadonlyArray1<'_, f32>,
    bitmap: &[u8],
    mut out: numpy::PyReadwriteArray1<'_, f32>,
    weight: f32,
) -> PyResult<()> {
    let vals = flat(&values)?;
    let target = out
        .as_slice_mut()
        .map_err(|_| CodecError::new_err("out must be C-contiguous float32"))?;
    py.detach(|| crate::seeded_mask::bitmap_scatter_add(vals, bitmap, weight, target))?;
    Ok(())
}

/// Packs n-bit codes (LSB-first).
#[pyfunction]
fn pack_bits<'py>(
    py: Python<'py>,
    codes: PyReadonlyArray1<'py, u16>,
    bits: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    if !(1..=16).contains(&bits) {
        return Err(CodecError::new_err(format!(
            "bits must be in 1..=16, got {bits}"
        )));
    }
    let c = codes
        .as_slice()
        .map_err(|_| CodecError::new_err("codes must be C-contiguous uint16"))?;
    if bits < 16 {
        if let Some(bad) = c.iter().find(|&&v| u32::from(v) >> bits != 0) {
            return Err(CodecError::new_err(format!(
                "code {bad} does not fit in {bits} bits"
            )));
        }
    }
    let mut out = vec![0u8; crate::bitpack::packed_len(c.len(), bits)];
    py.detach(|| crate::bitpack::pack(c, bits, &mut out));
    Ok(PyBytes::new(py, &out))
}

/// Unpacks `count` n-bit codes.
#[pyfunction]
fn unpack_bits<'py>(
    py: Python<'py>,
    data: &[u8],
    bits: u32,
    count: usize,
) -> PyResult<Bound<'py, PyArray1<u16>>> {
    if !(1..=16).contains(&bits) {
        return Err(CodecError::new_err(format!(
            "bits must be in 1..=16, got {bits}"
        )));
    }
    let need = crate::bitpack::packed_len(count, bits);
    if data.len() < need {
        return Err(FrameError::new_err(format!(
            "{count} codes of {bits} bits need {need} bytes, got {}",
            data.len()
        )));
    }
    let mut out = vec![0u16; count];
    py.detach(|| crate::bitpack::unpack(data, bits, &mut out));
    Ok(out.into_pyarray(py))
}

#[pymodule]
fn _fedcodec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("FrameError", py.get_type::<FrameError>())?;
    m.add("ChecksumError", py.get_type::<ChecksumError>())?;
    m.add("DEFAULT_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)?;
    m.add("FRAME_VERSION", crate::frame::VERSION)?;
    m.add_class::<Codec>()?;
    m.add_class::<Accumulator>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(topk_indices, m)?)?;
    m.add_function(wrap_pyfunction!(fwht, m)?)?;
    m.add_function(wrap_pyfunction!(mask_extract, m)?)?;
    m.add_function(wrap_pyfunction!(mask_scatter_add, m)?)?;
    m.add_function(wrap_pyfunction!(mask_count, m)?)?;
    m.add_function(wrap_pyfunction!(mask_bitmap, m)?)?;
    m.add_function(wrap_pyfunction!(bitmap_extract, m)?)?;
    m.add_function(wrap_pyfunction!(bitmap_scatter_add, m)?)?;
    m.add_function(wrap_pyfunction!(pack_bits, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_bits, m)?)?;
    register_robust(m)?;
    register_secagg(m)?;
    Ok(())
}

// ---- Byzantine-robust aggregation (rust/src/robust/) ------------------------------------------

use crate::robust::{self, Updates};
use numpy::{PyArray2, PyReadonlyArray2};

/// A C-contiguous K x d float32 matrix as a flat slice and its shape.
fn matrix<'a>(x: &'a PyReadonlyArray2<'_, f32>) -> PyResult<(&'a [f32], usize, usize)> {
    let (k, d) = (x.shape()[0], x.shape()[1]);
    // as_slice also accepts Fortran order, whose flat data would read as the transpose.
    let data = x
        .as_slice()
        .ok()
        .filter(|_| x.is_c_contiguous())
        .ok_or_else(|| CodecError::new_err("updates must be a C-contiguous float32 K x d array"))?;
    Ok((data, k, d))
}

/// A C-contiguous square float64 matrix (pairwise distances) as a flat slice and its side.
fn square<'a>(x: &'a PyReadonlyArray2<'_, f64>) -> PyResult<(&'a [f64], usize)> {
    let (k, k2) = (x.shape()[0], x.shape()[1]);
    if k != k2 {
        return Err(CodecError::new_err(format!(
            "distances must be a square matrix, got {k} x {k2}"
        )));
    }
    let data = x
        .as_slice()
        .ok()
        .filter(|_| x.is_c_contiguous())
        .ok_or_else(|| CodecError::new_err("distances must be a C-contiguous float64 array"))?;
    Ok((data, k))
}

/// Checks the K x d updates and runs `f` on them with the GIL released.
fn on_updates<T: Send>(
    py: Python<'_>,
    updates: &PyReadonlyArray2<'_, f32>,
    f: impl FnOnce(&Updates<'_>) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let (data, k, d) = matrix(updates)?;
    Ok(py.detach(|| f(&Updates::new(data, k, d)?))?)
}

fn f64_vector<'a>(x: &'a PyReadonlyArray1<'_, f64>, what: &str) -> PyResult<&'a [f64]> {
    x.as_slice()
        .map_err(|_| CodecError::new_err(format!("{what} must be a C-contiguous float64 array")))
}

/// Coordinate-wise median of K updates (rows), as `np.median(updates, axis=0)`.
#[pyfunction]
fn coordinate_median<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let out = on_updates(py, &updates, |u| Ok(robust::coordinate_median(u)))?;
    Ok(out.into_pyarray(py))
}

/// Coordinate-wise mean after dropping the `trim` smallest and `trim` largest values.
#[pyfunction]
fn trimmed_mean<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    trim: usize,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let out = on_updates(py, &updates, |u| robust::trimmed_mean(u, trim))?;
    Ok(out.into_pyarray(py))
}

/// Bulyan's coordinate phase: over the `selected` rows, the mean of the `beta` values nearest
/// each coordinate's median.
#[pyfunction]
fn bulyan_coordinates<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    selected: Vec<usize>,
    beta: usize,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let out = on_updates(py, &updates, |u| {
        robust::bulyan_coordinates(u, &selected, beta)
    })?;
    Ok(out.into_pyarray(py))
}

/// The K x K matrix of squared distances between updates (from one centered Gram matrix).
#[pyfunction]
fn pairwise_sq_dists<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let k = updates.shape()[0];
    let out = on_updates(py, &updates, |u| Ok(robust::pairwise_sq_dists(u)))?;
    out.into_pyarray(py).reshape([k, k])
}

/// Squared distance from every update to the point `z`.
#[pyfunction]
fn sq_dists_to<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    z: PyReadonlyArray1<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let point = flat(&z)?;
    let out = on_updates(py, &updates, |u| robust::sq_dists_to(u, point))?;
    Ok(out.into_pyarray(py))
}

/// `sum_i coeffs[i] * updates[i]`, accumulated in float64.
#[pyfunction]
fn row_combination<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    coeffs: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let c = f64_vector(&coeffs, "coefficients")?;
    let out = on_updates(py, &updates, |u| robust::row_combination(u, c))?;
    Ok(out.into_pyarray(py))
}

/// `mixing @ updates` for a rows x K float64 mixing matrix (nearest-neighbour mixing).
#[pyfunction]
fn mix_rows<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    mixing: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (rows, d) = (mixing.shape()[0], updates.shape()[1]);
    let m = mixing
        .as_slice()
        .ok()
        .filter(|_| mixing.is_c_contiguous())
        .ok_or_else(|| CodecError::new_err("mixing must be a C-contiguous float64 array"))?;
    let out = on_updates(py, &updates, |u| robust::mix_rows(u, m, rows))?;
    out.into_pyarray(py).reshape([rows, d])
}

/// Krum scores from a K x K matrix of squared distances: each row's sum over its K - f - 2
/// nearest others.
#[pyfunction]
fn krum_scores<'py>(
    py: Python<'py>,
    dists: PyReadonlyArray2<'py, f64>,
    f: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (data, k) = square(&dists)?;
    Ok(robust::krum_scores(data, k, f)?.into_pyarray(py))
}

/// Multi-Krum's choice: the `m` rows with the lowest Krum scores, best first.
#[pyfunction]
fn krum_select(dists: PyReadonlyArray2<'_, f64>, f: usize, m: usize) -> PyResult<Vec<usize>> {
    let (data, k) = square(&dists)?;
    Ok(robust::krum_select(data, k, f, m)?)
}

/// Bulyan's choice: K - 2f rows picked one at a time by Krum among those left.
#[pyfunction]
fn bulyan_select(dists: PyReadonlyArray2<'_, f64>, f: usize) -> PyResult<Vec<usize>> {
    let (data, k) = square(&dists)?;
    Ok(robust::bulyan_select(data, k, f)?)
}

/// Weighted geometric median by smoothed Weiszfeld: (point, iterations, converged).
#[pyfunction]
#[pyo3(signature = (updates, weights, nu=1e-6, max_iter=100, tol=1e-6))]
fn geometric_median<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    weights: PyReadonlyArray1<'py, f64>,
    nu: f64,
    max_iter: usize,
    tol: f64,
) -> PyResult<(Bound<'py, PyArray1<f32>>, usize, bool)> {
    let w = f64_vector(&weights, "weights")?;
    let gm = on_updates(py, &updates, |u| {
        robust::geometric_median(u, w, nu, max_iter, tol)
    })?;
    Ok((gm.point.into_pyarray(py), gm.iterations, gm.converged))
}

/// Centered clipping from `center`: `iters` steps that clip each pull to radius `tau`.
#[pyfunction]
#[pyo3(signature = (updates, weights, center, tau, iters=1))]
fn centered_clip<'py>(
    py: Python<'py>,
    updates: PyReadonlyArray2<'py, f32>,
    weights: PyReadonlyArray1<'py, f64>,
    center: PyReadonlyArray1<'py, f32>,
    tau: f64,
    iters: usize,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let w = f64_vector(&weights, "weights")?;
    let c = flat(&center)?;
    let out = on_updates(py, &updates, |u| robust::centered_clip(u, w, c, tau, iters))?;
    Ok(out.into_pyarray(py))
}

fn register_robust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(coordinate_median, m)?)?;
    m.add_function(wrap_pyfunction!(trimmed_mean, m)?)?;
    m.add_function(wrap_pyfunction!(bulyan_coordinates, m)?)?;
    m.add_function(wrap_pyfunction!(pairwise_sq_dists, m)?)?;
    m.add_function(wrap_pyfunction!(sq_dists_to, m)?)?;
    m.add_function(wrap_pyfunction!(row_combination, m)?)?;
    m.add_function(wrap_pyfunction!(mix_rows, m)?)?;
    m.add_function(wrap_pyfunction!(krum_scores, m)?)?;
    m.add_function(wrap_pyfunction!(krum_select, m)?)?;
    m.add_function(wrap_pyfunction!(bulyan_select, m)?)?;
    m.add_function(wrap_pyfunction!(geometric_median, m)?)?;
    m.add_function(wrap_pyfunction!(centered_clip, m)?)?;
    Ok(())
}

// ---- Secure aggregation (rust/src/secagg/): keys, shares, masks and the ring, for fedcore.secure ----

fn secagg_key(bytes: &[u8], what: &str) -> PyResult<[u8; 32]> {
    Ok(crate::secagg::keys::key32(bytes, what)?)
}

fn secagg_masks<'a>(seeds: &'a [[u8; 32]], signs: &[i8]) -> PyResult<Vec<crate::secagg::Mask<'a>>> {
    if seeds.len() != signs.len() {
        return Err(CodecError::new_err(format!(
            "one sign per seed: {} seeds, {} signs",
            seeds.len(),
            signs.len()
        )));
    }
    seeds
        .iter()
        .zip(signs)
        .map(|(seed, &s)| match s {
            1 => Ok(crate::secagg::Mask {
                seed,
                negate: false,
            }),
            -1 => Ok(crate::secagg::Mask { seed, negate: true }),
            _ => Err(CodecError::new_err(format!(
                "mask signs must be +1 or -1, got {s}"
            ))),
        })
        .collect()
}

fn secagg_seeds(seeds: Vec<Vec<u8>>) -> PyResult<Vec<[u8; 32]>> {
    seeds.iter().map(|s| secagg_key(s, "mask seed")).collect()
}

fn secagg_ring_slice<'a>(
    acc: &'a mut numpy::PyReadwriteArray1<'_, u32>,
) -> PyResult<&'a mut [u32]> {
    acc.as_slice_mut()
        .map_err(|_| CodecError::new_err("acc must be a C-contiguous uint32 array"))
}

/// A canonical Curve25519 scalar derived by HKDF-SHA256 from `seed` for purpose `info`.
#[pyfunction]
fn secagg_derive_scalar<'py>(py: Python<'py>, seed: &[u8], info: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &crate::secagg::derive_scalar(seed, info))
}

/// The X25519 public key of a 32-byte secret.
#[pyfunction]
fn secagg_public_key<'py>(py: Python<'py>, secret: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let secret = secagg_key(secret, "secret key")?;
    Ok(PyBytes::new(py, &crate::secagg::public_key(&secret)))
}

/// X25519 with a peer's public key, then HKDF-SHA256 with `info`: a 32-byte key for one purpose.
#[pyfunction]
fn secagg_agree<'py>(
    py: Python<'py>,
    secret: &[u8],
    peer_public: &[u8],
    info: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let secret = secagg_key(secret, "secret key")?;
    let peer = secagg_key(peer_public, "peer public key")?;
    Ok(PyBytes::new(
        py,
        &crate::secagg::agree(&secret, &peer, info)?,
    ))
}

fn secagg_nonce(nonce: &[u8]) -> PyResult<[u8; 12]> {
    nonce
        .try_into()
        .map_err(|_| CodecError::new_err(format!("nonce must be 12 bytes, got {}", nonce.len())))
}

/// ChaCha20-Poly1305 encryption bound to `aad` (ciphertext followed by its 16-byte tag).
#[pyfunction]
fn secagg_seal<'py>(
    py: Python<'py>,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let key = secagg_key(key, "AEAD key")?;
    let sealed = crate::secagg::seal(&key, &secagg_nonce(nonce)?, aad, plaintext)?;
    Ok(PyBytes::new(py, &sealed))
}

/// Decrypts what `secagg_seal` made; raises CodecError when authentication fails.
#[pyfunction]
fn secagg_open<'py>(
    py: Python<'py>,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let key = secagg_key(key, "AEAD key")?;
    let plain = crate::secagg::open(&key, &secagg_nonce(nonce)?, aad, sealed)?;
    Ok(PyBytes::new(py, &plain))
}

/// Shamir t-of-n shares of 32-byte scalar secrets at points `xs`, coefficients from HKDF of `coin`.
#[pyfunction]
fn secagg_share<'py>(
    py: Python<'py>,
    secrets: Vec<Vec<u8>>,
    xs: Vec<u32>,
    threshold: usize,
    coin: &[u8],
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let refs: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    let shares = crate::secagg::share(&refs, &xs, threshold, coin)?;
    Ok(shares.iter().map(|s| PyBytes::new(py, s)).collect())
}

/// Lagrange interpolation of shares at each point of `at` (point 0 recovers the secrets).
#[pyfunction]
fn secagg_interpolate(
    py: Python<'_>,
    xs: Vec<u32>,
    shares: Vec<Vec<u8>>,
    at: Vec<u32>,
) -> PyResult<Vec<Bound<'_, PyBytes>>> {
    let refs: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
    let values = py.detach(|| crate::secagg::interpolate(&xs, &refs, &at))?;
    Ok(values.iter().map(|v| PyBytes::new(py, v)).collect())
}

/// Clip to [-clip, clip] and stochastically round to `bits`-bit codes (uint32), rounding noise from `seed`.
#[pyfunction]
fn secagg_quantize<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    clip: f32,
    bits: u32,
    seed: &[u8],
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let data = flat(&x)?;
    let seed = secagg_key(seed, "rounding seed")?;
    let codes = py.detach(|| crate::secagg::quantize(data, clip, bits, &seed))?;
    Ok(codes.into_pyarray(py))
}

/// x + sum of sign_i * stream(seed_i) in Z_2^ring_bits under PRG `prg`, bit-packed: a masked upload.
#[pyfunction]
fn secagg_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, u32>,
    seeds: Vec<Vec<u8>>,
    signs: Vec<i8>,
    ring_bits: u32,
    prg: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let prg = crate::secagg::Prg::parse(prg)?;
    let data = x
        .as_slice()
        .map_err(|_| CodecError::new_err("x must be a C-contiguous uint32 array"))?;
    let seeds = secagg_seeds(seeds)?;
    let masks = secagg_masks(&seeds, &signs)?;
    masked_upload(py, data.len(), ring_bits, |out| {
        crate::secagg::mask_and_pack_into(data, &masks, ring_bits, prg, out)
    })
}

/// A masked upload of `n` ring elements of `ring_bits` bits, packed by `pack` straight into a new
/// bytes object (no Rust buffer, no copy), off the GIL.
fn masked_upload(
    py: Python<'_>,
    n: usize,
    ring_bits: u32,
    pack: impl FnOnce(&mut [u8]) -> crate::error::Result<()> + Send,
) -> PyResult<Bound<'_, PyBytes>> {
    crate::secagg::check_ring_bits(ring_bits)?;
    let len = crate::secagg::packed_len(n, ring_bits);
    fresh_bytes(py, len, |buf| {
        py.detach(|| pack(crate::kernels::uninit::zeroed(buf)))
            .map_err(PyErr::from)
    })
}

/// quantize(x, clip, bits, rounding_seed) masked like `secagg_mask`, in one pass: the codes never exist whole.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn secagg_quantize_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    clip: f32,
    bits: u32,
    rounding_seed: &[u8],
    seeds: Vec<Vec<u8>>,
    signs: Vec<i8>,
    ring_bits: u32,
    prg: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let prg = crate::secagg::Prg::parse(prg)?;
    let data = flat(&x)?;
    let rounding_seed = secagg_key(rounding_seed, "rounding seed")?;
    let seeds = secagg_seeds(seeds)?;
    let masks = secagg_masks(&seeds, &signs)?;
    masked_upload(py, data.len(), ring_bits, |out| {
        crate::secagg::quantize_mask_and_pack_into(
            data,
            clip,
            bits,
            &rounding_seed,
            &masks,
            ring_bits,
            prg,
            out,
        )
    })
}

/// In place: acc += sum of sign_i * stream(seed_i) in Z_2^ring_bits under `prg` (the server removes masks).
#[pyfunction]
fn secagg_apply_masks(
    py: Python<'_>,
    mut acc: numpy::PyReadwriteArray1<'_, u32>,
    seeds: Vec<Vec<u8>>,
    signs: Vec<i8>,
    ring_bits: u32,
    prg: &str,
) -> PyResult<()> {
    let prg = crate::secagg::Prg::parse(prg)?;
    let seeds = secagg_seeds(seeds)?;
    let masks = secagg_masks(&seeds, &signs)?;
    let target = secagg_ring_slice(&mut acc)?;
    py.detach(|| crate::secagg::apply_masks(target, &masks, ring_bits, prg))?;
    Ok(())
}

/// In place: acc += a packed payload in Z_2^ring_bits (the server's modular sum).
#[pyfunction]
fn secagg_add_packed(
    py: Python<'_>,
    mut acc: numpy::PyReadwriteArray1<'_, u32>,
    payload: &[u8],
    ring_bits: u32,
) -> PyResult<()> {
    let target = secagg_ring_slice(&mut acc)?;
    py.detach(|| crate::secagg::add_packed(target, payload, ring_bits))?;
    Ok(())
}

/// Bit-packs ring elements (reduced mod 2^ring_bits).
#[pyfunction]
fn secagg_pack<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, u32>,
    ring_bits: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = x
        .as_slice()
        .map_err(|_| CodecError::new_err("x must be a C-contiguous uint32 array"))?;
    let packed = py.detach(|| crate::secagg::pack(data, ring_bits))?;
    Ok(PyBytes::new(py, &packed))
}

/// The `n` ring elements of a packed payload (its length must match exactly).
#[pyfunction]
fn secagg_unpack<'py>(
    py: Python<'py>,
    payload: &[u8],
    ring_bits: u32,
    n: usize,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let out = py.detach(|| crate::secagg::unpack(payload, ring_bits, n))?;
    Ok(out.into_pyarray(py))
}

/// The first `n` elements of a seed's mask stream under `prg` in Z_2^ring_bits.
#[pyfunction]
fn secagg_mask_stream<'py>(
    py: Python<'py>,
    seed: &[u8],
    n: usize,
    ring_bits: u32,
    prg: &str,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let prg = crate::secagg::Prg::parse(prg)?;
    let seed = secagg_key(seed, "mask seed")?;
    let out = py.detach(|| crate::secagg::mask_stream(&seed, n, ring_bits, prg))?;
    Ok(out.into_pyarray(py))
}

/// The mask PRGs this build expands seeds with, the default first (names as the SecAgg+ setup carries them).
#[pyfunction]
fn secagg_prgs() -> Vec<&'static str> {
    crate::secagg::Prg::ALL.iter().map(|p| p.name()).collect()
}

/// For each public key, why X25519 with it is refused (off the curve, or small order), or None.
#[pyfunction]
fn secagg_key_faults(publics: Vec<Vec<u8>>) -> PyResult<Vec<Option<&'static str>>> {
    publics
        .iter()
        .map(|p| Ok(crate::secagg::key_fault(&secagg_key(p, "public key")?)))
        .collect()
}

/// X25519 with each peer public key, then HKDF-SHA256 with `info`, in parallel with the GIL released.
#[pyfunction]
fn secagg_agree_many<'py>(
    py: Python<'py>,
    secret: &[u8],
    peer_publics: Vec<Vec<u8>>,
    info: &[u8],
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let secret = secagg_key(secret, "secret key")?;
    let peers = peer_publics
        .iter()
        .map(|p| secagg_key(p, "peer public key"))
        .collect::<PyResult<Vec<_>>>()?;
    let keys = py.detach(|| crate::secagg::agree_many(&secret, &peers, info))?;
    Ok(keys.iter().map(|k| PyBytes::new(py, k)).collect())
}

fn register_secagg(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(secagg_derive_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_agree, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_seal, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_open, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_share, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_interpolate, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_mask, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_quantize_mask, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_apply_masks, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_add_packed, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_pack, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_unpack, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_mask_stream, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_prgs, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_agree_many, m)?)?;
    m.add_function(wrap_pyfunction!(secagg_key_faults, m)?)?;
    Ok(())
}
