//! A reader for NumPy `.npy` files (format versions 1 to 3, C order, little-endian).

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// NumPy's type string, e.g. `<f4`.
    pub descr: String,
    /// True for Fortran (column-major) order.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Offset of the data from the start of the file.
    pub data_offset: usize,
}

/// Parses the header of a `.npy` file; the error says what is wrong with it.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic); save it with numpy.save".into());
    }
    let major = bytes[6];
    let (len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!(".npy format version {v} is not supported (1, 2 and 3 are)")),
    };
    let end = start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or("truncated .npy header")?;
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(text, "descr")?;
    let descr = unquote(descr).ok_or_else(|| format!("bad `descr` in the .npy header: {descr}"))?.to_string();
    let fortran = match dict_value(text, "fortran_order")? {
        "False" => false,
        "True" => true,
        v => return Err(format!("bad `fortran_order` in the .npy header: {v}")),
    };
    let shape_txt = dict_value(text, "shape")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad `shape` in the .npy header: {shape_txt}"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L').parse::<usize>().map_err(|_| format!("bad `shape` in the .npy header: {shape_txt}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader { descr, fortran_order: fortran, shape, data_offset: end })
}

fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'t>(text: &'t str, key: &str) -> Result<&'t str, String> {
    let missing = || format!("the .npy header has no `{key}`");
    let pos = text.find(&format!("'{key}'")).or_else(|| text.find(&format!("\"{key}\""))).ok_or_else(missing)?;
    let rest = &text[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':').ok_or_else(missing)?.trim_start();
    // The value runs to the next top-level comma or closing brace; tuples hold commas.
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
    }
    Err(missing())
}

/// The `.npy` type string of an ONNX element type with a calibration feed, if any.
pub(crate) fn descr_of(data_type: i32) -> Option<&'static [&'static str]> {
    use crate::onnx::proto::data_type as dt;
    Some(match data_type {
        dt::FLOAT => &["<f4"],
        dt::INT64 => &["<i8"],
        dt::INT32 => &["<i4"],
        dt::UINT8 => &["|u1", "<u1"],
        dt::BOOL => &["|b1", "<b1"],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, version: u8) -> Vec<u8> {
        let mut b = b"\x93NUMPY".to_vec();
        b.push(version);
        b.push(0);
        if version == 1 {
            b.extend((header.len() as u16).to_le_bytes());
        } else {
            b.extend((header.len() as u32).to_le_bytes());
        }
        b.extend(header.as_bytes());
        b
    }

    #[test]
    fn parses_v1_and_v2_headers() {
        let h = parse_header(&npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 4, 4), }\n", 1)).unwrap();
        assert_eq!(h.descr, "<f4");
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![1, 3, 4, 4]);
        let h2 = parse_header(&npy("{'descr': '<i8', 'fortran_order': True, 'shape': (7,), }", 2)).unwrap();
        assert_eq!((h2.descr.as_str(), h2.fortran_order, h2.shape.clone()), ("<i8", true, vec![7]));
        assert_eq!(h2.data_offset, 12 + "{'descr': '<i8', 'fortran_order': True, 'shape': (7,), }".len());
        let scalar = parse_header(&npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1)).unwrap();
        assert!(scalar.shape.is_empty());
    }

    #[test]
    fn bad_headers_say_why() {
        assert!(parse_header(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
        assert!(parse_header(&npy("{'descr': '<f4', 'shape': (1,), }", 1)).unwrap_err().contains("fortran_order"));
        assert!(parse_header(&npy("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", 1))
            .unwrap_err()
            .contains("shape"));
        let mut t = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 1);
        t.truncate(20);
        assert!(parse_header(&t).unwrap_err().contains("truncated"));
        assert!(parse_header(&npy("{}", 9)).unwrap_err().contains("version 9"));
    }
}
