//! Typed access to [`TensorProto`] data, from `raw_data` (little-endian) or the typed fields.
//!
//! Every reader checks the element count against `dims` first, so a tensor whose data length
//! disagrees with its shape is an error naming the tensor, never an out-of-bounds read.

use super::proto::{data_location, data_type as dt, TensorProto};
use crate::error::{Error, Result};
use half::{bf16, f16};

/// Bytes per element of a fixed-size data type, `None` for strings and sub-byte types.
pub fn elem_size(data_type: i32) -> Option<usize> {
    Some(match data_type {
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::UINT8 | dt::INT8 | dt::BOOL => 1,
        dt::FLOAT8E4M3FN | dt::FLOAT8E4M3FNUZ | dt::FLOAT8E5M2 | dt::FLOAT8E5M2FNUZ | dt::FLOAT8E8M0 => 1,
        dt::UINT16 | dt::INT16 | dt::FLOAT16 | dt::BFLOAT16 => 2,
        dt::INT64 | dt::UINT64 | dt::DOUBLE | dt::COMPLEX64 => 8,
        dt::COMPLEX128 => 16,
        _ => return None,
    })
}

/// Number of elements a shape holds; an error for negative dims or a count that overflows.
pub fn numel(name: &str, dims: &[i64]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| Error::tensor(name, format!("negative dimension {d} in {dims:?}")))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| Error::tensor(name, format!("shape {dims:?} holds more elements than memory can")))?;
    }
    Ok(n)
}

/// Element count of `t`.
pub fn len(t: &TensorProto) -> Result<usize> {
    numel(&t.name, &t.dims)
}

fn check_inline(t: &TensorProto) -> Result<()> {
    if t.data_location == data_location::EXTERNAL {
        return Err(Error::tensor(&t.name, "data is stored externally and was not loaded; load the model with Model::load"));
    }
    Ok(())
}

fn raw<const N: usize, T>(t: &TensorProto, n: usize, f: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
    let want = n.checked_mul(N).ok_or_else(|| Error::tensor(&t.name, "size overflows"))?;
    if t.raw_data.len() != want {
        return Err(Error::tensor(
            &t.name,
            format!("raw_data holds {} bytes but shape {:?} of {} needs {want}", t.raw_data.len(), t.dims, dt::name(t.data_type)),
        ));
    }
    Ok(t.raw_data
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect())
}

fn typed<S: Copy, T>(t: &TensorProto, n: usize, field: &[S], field_name: &str, f: impl Fn(S) -> T) -> Result<Vec<T>> {
    if field.len() != n {
        return Err(Error::tensor(
            &t.name,
            format!("{field_name} holds {} values but shape {:?} needs {n}", field.len(), t.dims),
        ));
    }
    Ok(field.iter().map(|&v| f(v)).collect())
}

fn expect_type(t: &TensorProto, want: &[i32]) -> Result<()> {
    if want.contains(&t.data_type) {
        Ok(())
    } else {
        Err(Error::tensor(&t.name, format!("has type {}, expected {}", dt::name(t.data_type), dt::name(want[0]))))
    }
}

/// Values of a float tensor of any width (f32, f16, bf16, f64), widened or narrowed to f32.
pub fn to_f32(t: &TensorProto) -> Result<Vec<f32>> {
    check_inline(t)?;
    let n = len(t)?;
    let has_raw = !t.raw_data.is_empty() || n == 0;
    match t.data_type {
        dt::FLOAT if has_raw && t.float_data.is_empty() => raw::<4, _>(t, n, f32::from_le_bytes),
        dt::FLOAT => typed(t, n, &t.float_data, "float_data", |v| v),
        dt::FLOAT16 if has_raw && t.int32_data.is_empty() => raw::<2, _>(t, n, |b| f16::from_le_bytes(b).to_f32()),
        dt::FLOAT16 => typed(t, n, &t.int32_data, "int32_data", |v| f16::from_bits(v as u16).to_f32()),
        dt::BFLOAT16 if has_raw && t.int32_data.is_empty() => raw::<2, _>(t, n, |b| bf16::from_le_bytes(b).to_f32()),
        dt::BFLOAT16 => typed(t, n, &t.int32_data, "int32_data", |v| bf16::from_bits(v as u16).to_f32()),
        dt::DOUBLE => Ok(to_f64(t)?.into_iter().map(|v| v as f32).collect()),
        _ => Err(Error::tensor(&t.name, format!("has type {}, expected a float type", dt::name(t.data_type)))),
    }
}

/// Values of a float64 tensor.
pub fn to_f64(t: &TensorProto) -> Result<Vec<f64>> {
    check_inline(t)?;
    expect_type(t, &[dt::DOUBLE])?;
    let n = len(t)?;
    if t.double_data.is_empty() {
        raw::<8, _>(t, n, f64::from_le_bytes)
    } else {
        typed(t, n, &t.double_data, "double_data", |v| v)
    }
}

/// Values of an integer tensor (any signed or unsigned width up to 64 bits, or bool) as i64.
pub fn to_i64(t: &TensorProto) -> Result<Vec<i64>> {
    check_inline(t)?;
    let n = len(t)?;
    let use_raw = !t.raw_data.is_empty() || n == 0;
    match t.data_type {
        dt::INT64 if use_raw && t.int64_data.is_empty() => raw::<8, _>(t, n, i64::from_le_bytes),
        dt::INT64 => typed(t, n, &t.int64_data, "int64_data", |v| v),
        dt::INT32 if use_raw && t.int32_data.is_empty() => raw::<4, _>(t, n, |b| i32::from_le_bytes(b) as i64),
        dt::UINT32 if use_raw && t.uint64_data.is_empty() => raw::<4, _>(t, n, |b| u32::from_le_bytes(b) as i64),
        dt::UINT32 => typed(t, n, &t.uint64_data, "uint64_data", |v| v as i64),
        dt::UINT64 if use_raw && t.uint64_data.is_empty() => raw::<8, _>(t, n, |b| u64::from_le_bytes(b) as i64),
        dt::UINT64 => typed(t, n, &t.uint64_data, "uint64_data", |v| v as i64),
        dt::INT16 if use_raw && t.int32_data.is_empty() => raw::<2, _>(t, n, |b| i16::from_le_bytes(b) as i64),
        dt::UINT16 if use_raw && t.int32_data.is_empty() => raw::<2, _>(t, n, |b| u16::from_le_bytes(b) as i64),
        dt::INT8 if use_raw && t.int32_data.is_empty() => raw::<1, _>(t, n, |b| b[0] as i8 as i64),
        dt::UINT8 | dt::BOOL if use_raw && t.int32_data.is_empty() => raw::<1, _>(t, n, |b| b[0] as i64),
        dt::INT32 | dt::INT16 | dt::UINT16 | dt::INT8 | dt::UINT8 | dt::BOOL => typed(t, n, &t.int32_data, "int32_data", |v| v as i64),
        _ => Err(Error::tensor(&t.name, format!("has type {}, expected an integer type", dt::name(t.data_type)))),
    }
}

/// Values of an int8 tensor.
pub fn to_i8(t: &TensorProto) -> Result<Vec<i8>> {
    expect_type(t, &[dt::INT8])?;
    Ok(to_i64(t)?.into_iter().map(|v| v as i8).collect())
}

/// Values of a uint8 tensor.
pub fn to_u8(t: &TensorProto) -> Result<Vec<u8>> {
    expect_type(t, &[dt::UINT8])?;
    Ok(to_i64(t)?.into_iter().map(|v| v as u8).collect())
}

/// Values of an int32 tensor.
pub fn to_i32(t: &TensorProto) -> Result<Vec<i32>> {
    expect_type(t, &[dt::INT32])?;
    Ok(to_i64(t)?.into_iter().map(|v| v as i32).collect())
}

/// Values of a bool tensor.
pub fn to_bool(t: &TensorProto) -> Result<Vec<bool>> {
    expect_type(t, &[dt::BOOL])?;
    Ok(to_i64(t)?.into_iter().map(|v| v != 0).collect())
}

/// The data of a fixed-size tensor as little-endian raw bytes, whichever field held it.
pub fn to_raw(t: &TensorProto) -> Result<Vec<u8>> {
    check_inline(t)?;
    let n = len(t)?;
    let size = elem_size(t.data_type)
        .ok_or_else(|| Error::tensor(&t.name, format!("type {} has no fixed-size raw form", dt::name(t.data_type))))?;
    if !t.raw_data.is_empty() || n == 0 {
        if t.raw_data.len() != n * size {
            return Err(Error::tensor(&t.name, format!("raw_data holds {} bytes, shape {:?} needs {}", t.raw_data.len(), t.dims, n * size)));
        }
        return Ok(t.raw_data.clone());
    }
    Ok(match t.data_type {
        dt::FLOAT => to_f32(t)?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        dt::DOUBLE => to_f64(t)?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => {
            typed(t, n, &t.int32_data, "int32_data", |v| v as u16)?.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        dt::INT8 | dt::UINT8 | dt::BOOL | dt::FLOAT8E4M3FN | dt::FLOAT8E4M3FNUZ | dt::FLOAT8E5M2 | dt::FLOAT8E5M2FNUZ | dt::FLOAT8E8M0 => {
            typed(t, n, &t.int32_data, "int32_data", |v| v as u8)?
        }
        dt::INT32 => to_i64(t)?.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        dt::UINT32 => to_i64(t)?.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        dt::INT64 => to_i64(t)?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        dt::UINT64 => typed(t, n, &t.uint64_data, "uint64_data", |v| v)?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => return Err(Error::tensor(&t.name, format!("type {} is not supported here", dt::name(t.data_type)))),
    })
}

fn build(name: &str, dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> TensorProto {
    TensorProto { name: name.to_string(), dims: dims.to_vec(), data_type, raw_data, ..Default::default() }
}

/// A float32 tensor stored as raw data.
pub fn from_f32(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    build(name, dims, dt::FLOAT, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}
/// A float16 tensor stored as raw data.
pub fn from_f16(name: &str, dims: &[i64], v: &[f16]) -> TensorProto {
    build(name, dims, dt::FLOAT16, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}
/// A bfloat16 tensor stored as raw data.
pub fn from_bf16(name: &str, dims: &[i64], v: &[bf16]) -> TensorProto {
    build(name, dims, dt::BFLOAT16, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}
/// An int8 tensor stored as raw data.
pub fn from_i8(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
    build(name, dims, dt::INT8, v.iter().map(|&x| x as u8).collect())
}
/// A uint8 tensor stored as raw data.
pub fn from_u8(name: &str, dims: &[i64], v: &[u8]) -> TensorProto {
    build(name, dims, dt::UINT8, v.to_vec())
}
/// An int32 tensor stored as raw data.
pub fn from_i32(name: &str, dims: &[i64], v: &[i32]) -> TensorProto {
    build(name, dims, dt::INT32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}
/// An int64 tensor stored as raw data.
pub fn from_i64(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    build(name, dims, dt::INT64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}
/// A bool tensor stored as raw data.
pub fn from_bool(name: &str, dims: &[i64], v: &[bool]) -> TensorProto {
    build(name, dims, dt::BOOL, v.iter().map(|&x| x as u8).collect())
}

/// True for the float types Kenosis treats as weights.
pub fn is_float(data_type: i32) -> bool {
    matches!(data_type, dt::FLOAT | dt::FLOAT16 | dt::BFLOAT16 | dt::DOUBLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_fields_agree() {
        let a = from_f32("a", &[2, 2], &[1.0, -2.0, 3.5, 0.0]);
        let b = TensorProto { name: "b".into(), dims: vec![2, 2], data_type: dt::FLOAT, float_data: vec![1.0, -2.0, 3.5, 0.0], ..Default::default() };
        assert_eq!(to_f32(&a).unwrap(), to_f32(&b).unwrap());
        assert_eq!(to_raw(&a).unwrap(), to_raw(&b).unwrap());
    }

    #[test]
    fn half_types_widen() {
        let h = from_f16("h", &[2], &[f16::from_f32(0.5), f16::from_f32(-1.25)]);
        assert_eq!(to_f32(&h).unwrap(), vec![0.5, -1.25]);
        let b = from_bf16("b", &[1], &[bf16::from_f32(2.0)]);
        assert_eq!(to_f32(&b).unwrap(), vec![2.0]);
        let typed16 = TensorProto { name: "t".into(), dims: vec![1], data_type: dt::FLOAT16, int32_data: vec![f16::from_f32(3.0).to_bits() as i32], ..Default::default() };
        assert_eq!(to_f32(&typed16).unwrap(), vec![3.0]);
    }

    #[test]
    fn integers_of_every_width() {
        assert_eq!(to_i64(&from_i64("x", &[2], &[-5, 7])).unwrap(), vec![-5, 7]);
        assert_eq!(to_i32(&from_i32("x", &[1], &[-9])).unwrap(), vec![-9]);
        assert_eq!(to_i8(&from_i8("x", &[2], &[-128, 127])).unwrap(), vec![-128, 127]);
        assert_eq!(to_u8(&from_u8("x", &[1], &[255])).unwrap(), vec![255]);
        assert_eq!(to_bool(&from_bool("x", &[2], &[true, false])).unwrap(), vec![true, false]);
        let d = TensorProto { name: "d".into(), dims: vec![1], data_type: dt::DOUBLE, double_data: vec![1.5], ..Default::default() };
        assert_eq!(to_f64(&d).unwrap(), vec![1.5]);
        assert_eq!(to_f32(&d).unwrap(), vec![1.5]);
    }

    #[test]
    fn length_mismatch_names_the_tensor() {
        let mut t = from_f32("w", &[3], &[1.0, 2.0, 3.0]);
        t.raw_data.pop();
        let e = to_f32(&t).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("11 bytes"), "{e}");
        let neg = from_f32("n", &[-1], &[]);
        assert!(to_f32(&neg).unwrap_err().to_string().contains("negative"));
        let huge = TensorProto { name: "h".into(), dims: vec![i64::MAX, i64::MAX], data_type: dt::FLOAT, ..Default::default() };
        assert!(to_f32(&huge).is_err());
    }
}
