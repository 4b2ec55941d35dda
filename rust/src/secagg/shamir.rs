//! Shamir t-of-n secret sharing over the Curve25519 scalar field (arithmetic from curve25519-dalek).
//!
//! A share of several secrets at once is the concatenation of one 32-byte scalar per secret,
//! all from independent polynomials of degree `t - 1` evaluated at the holder's point `x != 0`.

use curve25519_dalek::scalar::Scalar;

use super::keys::derive_scalar;
use crate::error::{CodecError, Result};

const SCALAR_LEN: usize = 32;

fn canonical(bytes: &[u8], what: &str) -> Result<Scalar> {
    let arr: [u8; SCALAR_LEN] = bytes
        .try_into()
        .map_err(|_| CodecError::input(format!("{what} must be {SCALAR_LEN} bytes")))?;
    Option::from(Scalar::from_canonical_bytes(arr))
        .ok_or_else(|| CodecError::input(format!("{what} is not a canonical field element")))
}

fn distinct_points(xs: &[u32]) -> Result<()> {
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    if sorted.first() == Some(&0) {
        return Err(CodecError::param("share points must be non-zero"));
    }
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(CodecError::param("share points must be distinct"));
    }
    Ok(())
}

/// Shares each 32-byte canonical `secret` t-of-`xs.len()`; coefficients come from HKDF of `coin`.
///
/// Returns one share per point, in the order of `xs`. `coin` must be secret and fresh per
/// dealing: it determines every coefficient.
pub fn share(secrets: &[&[u8]], xs: &[u32], t: usize, coin: &[u8]) -> Result<Vec<Vec<u8>>> {
    if t == 0 || t > xs.len() {
        return Err(CodecError::param(format!(
            "threshold must be in 1..={}, got {t}",
            xs.len()
        )));
    }
    distinct_points(xs)?;
    let polys = secrets
        .iter()
        .enumerate()
        .map(|(s, bytes)| {
            let mut coeffs = vec![canonical(bytes, "secret")?];
            for j in 1..t {
                let info = [
                    b"shamir coefficient".as_slice(),
                    &(s as u64).to_le_bytes(),
                    &(j as u64).to_le_bytes(),
                ]
                .concat();
                coeffs.push(Scalar::from_bytes_mod_order(derive_scalar(coin, &info)));
            }
            Ok(coeffs)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(xs
        .iter()
        .map(|&x| {
            let x = Scalar::from(x);
            polys
                .iter()
                .flat_map(|c| {
                    c.iter()
                        .rev()
                        .fold(Scalar::ZERO, |acc, a| acc * x + a)
                        .to_bytes()
                })
                .collect()
        })
        .collect())
}

/// The shared polynomials evaluated at each point of `at` from shares at points `xs` (Lagrange).
///
/// `at = [0]` recovers the secrets; other points re-derive what the holder at that point must
/// hold, which checks a share against the others. With `t` or more shares of one dealing this
/// is exact; with fewer it is a field element that says nothing about the secrets.
pub fn interpolate(xs: &[u32], shares: &[&[u8]], at: &[u32]) -> Result<Vec<Vec<u8>>> {
    if xs.is_empty() || xs.len() != shares.len() {
        return Err(CodecError::param(format!(
            "need one share per point and at least one, got {} points and {} shares",
            xs.len(),
            shares.len()
        )));
    }
    distinct_points(xs)?;
    let width = shares[0].len();
    if width == 0 || !width.is_multiple_of(SCALAR_LEN) || shares.iter().any(|s| s.len() != width) {
        return Err(CodecError::input(format!(
            "shares must all be the same non-zero multiple of {SCALAR_LEN} bytes"
        )));
    }
    let values: Vec<Vec<Scalar>> = shares
        .iter()
        .map(|s| {
            s.chunks_exact(SCALAR_LEN)
                .map(|c| canonical(c, "share"))
                .collect()
        })
        .collect::<Result<_>>()?;
    let points: Vec<Scalar> = xs.iter().map(|&x| Scalar::from(x)).collect();
    let others = |i: usize| {
        points
            .iter()
            .enumerate()
            .filter(move |&(j, _)| j != i)
            .map(|(_, x)| x)
    };
    let mut denominators: Vec<Scalar> = points
        .iter()
        .enumerate()
        .map(|(i, xi)| others(i).fold(Scalar::ONE, |acc, xj| acc * (xi - xj)))
        .collect();
    Scalar::batch_invert(&mut denominators);
    Ok(at
        .iter()
        .map(|&a| {
            let a = Scalar::from(a);
            let weights: Vec<Scalar> = (0..points.len())
                .map(|i| others(i).fold(denominators[i], |acc, xj| acc * (a - xj)))
                .collect();
            (0..width / SCALAR_LEN)
                .flat_map(|k| {
                    weights
                        .iter()
                        .zip(&values)
                        .fold(Scalar::ZERO, |acc, (w, v)| acc + w * v[k])
                        .to_bytes()
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret(tag: u8) -> [u8; 32] {
        derive_scalar(&[tag], b"secret")
    }

    proptest! {
        #[test]
        fn any_t_shares_recover_both_secrets(t in 1usize..8, extra in 0usize..5, pick in any::<u64>()) {
            let n = t + extra;
            let (a, b) = (secret(1), secret(2));
            let xs: Vec<u32> = (1..=n as u32).map(|i| i * 7).collect();
            let shares = share(&[&a, &b], &xs, t, b"coin").unwrap();
            // A t-subset chosen by `pick`: rotate the list and take the first t.
            let r = (pick % n as u64) as usize;
            let idx: Vec<usize> = (0..t).map(|i| (i + r) % n).collect();
            let sx: Vec<u32> = idx.iter().map(|&i| xs[i]).collect();
            let ss: Vec<&[u8]> = idx.iter().map(|&i| shares[i].as_slice()).collect();
            let got = interpolate(&sx, &ss, &[0]).unwrap();
            prop_assert_eq!(&got[0][..32], &a[..]);
            prop_assert_eq!(&got[0][32..], &b[..]);
            // Every share lies on the polynomial the subset defines.
            prop_assert_eq!(interpolate(&sx, &ss, &xs).unwrap(), shares);
        }
    }

    #[test]
    fn fewer_than_t_shares_miss_the_secret() {
        let a = secret(3);
        let xs = [1, 2, 3, 4, 5];
        let shares = share(&[&a], &xs, 3, b"coin").unwrap();
        let two: Vec<&[u8]> = shares[..2].iter().map(Vec::as_slice).collect();
        assert_ne!(interpolate(&xs[..2], &two, &[0]).unwrap()[0], a.to_vec());
    }

    #[test]
    fn bad_inputs_are_refused() {
        let a = secret(4);
        assert!(share(&[&a], &[1, 1], 2, b"c").is_err());
        assert!(share(&[&a], &[0, 1], 2, b"c").is_err());
        assert!(share(&[&a], &[1, 2], 3, b"c").is_err());
        assert!(share(&[&[0xffu8; 32]], &[1, 2], 2, b"c").is_err());
        assert!(interpolate(&[1, 2], &[&[0u8; 32]], &[0]).is_err());
        assert!(interpolate(&[1], &[&[0u8; 31]], &[0]).is_err());
    }
}
