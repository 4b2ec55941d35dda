//! Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan's selection (El Mhamdi et al. 2018) from
//! a K x K matrix of squared distances: cheap once the matrix exists, O(K^2 log K).

use crate::error::{CodecError, Result};

fn check_dists(dists: &[f64], k: usize) -> Result<()> {
    if k == 0 || k.checked_mul(k) != Some(dists.len()) {
        return Err(CodecError::param(format!(
            "{} distances do not form a {k} x {k} matrix",
            dists.len()
        )));
    }
    if let Some(v) = dists.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(CodecError::param(format!(
            "distances must be finite and >= 0, got {v}"
        )));
    }
    Ok(())
}

/// Each candidate's sum of squared distances to its `neighbours` nearest others among `among`.
fn scores_among(dists: &[f64], k: usize, among: &[usize], neighbours: usize) -> Vec<f64> {
    let mut row = Vec::with_capacity(among.len());
    among
        .iter()
        .map(|&i| {
            row.clear();
            row.extend(among.iter().filter(|&&j| j != i).map(|&j| dists[i * k + j]));
            row.sort_unstable_by(f64::total_cmp);
            row.iter().take(neighbours).sum()
        })
        .collect()
}

/// Indices of the `m` smallest scores, ties broken by the lower index.
fn lowest(scores: &[f64], m: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order.truncate(m);
    order
}

/// Krum scores: per update, the sum of squared distances to its K - f - 2 nearest others.
/// Needs K >= 2f + 3 (the paper's condition for Krum's guarantee).
pub fn krum_scores(dists: &[f64], k: usize, f: usize) -> Result<Vec<f64>> {
    check_dists(dists, k)?;
    if k < 2 * f + 3 {
        return Err(CodecError::param(format!(
            "Krum with f = {f} needs at least {} updates, got {k}",
            2 * f + 3
        )));
    }
    let all: Vec<usize> = (0..k).collect();
    Ok(scores_among(dists, k, &all, k - f - 2))
}

/// Multi-Krum: the `m` updates with the lowest Krum scores (m = 1 is Krum), best first.
pub fn krum_select(dists: &[f64], k: usize, f: usize, m: usize) -> Result<Vec<usize>> {
    if m == 0 || m > k {
        return Err(CodecError::param(format!(
            "Multi-Krum keeps m in 1..={k} updates, got {m}"
        )));
    }
    Ok(lowest(&krum_scores(dists, k, f)?, m))
}

/// Bulyan's selection: K - 2f updates picked one at a time by Krum over those not yet picked
/// (each round's Krum counts max(r - f - 2, 1) neighbours among the r left). Needs K >= 4f + 3.
pub fn bulyan_select(dists: &[f64], k: usize, f: usize) -> Result<Vec<usize>> {
    check_dists(dists, k)?;
    if k < 4 * f + 3 {
        return Err(CodecError::param(format!(
            "Bulyan with f = {f} needs at least {} updates, got {k}",
            4 * f + 3
        )));
    }
    let mut left: Vec<usize> = (0..k).collect();
    let mut picked = Vec::with_capacity(k - 2 * f);
    while picked.len() < k - 2 * f {
        let r = left.len();
        let neighbours = r.saturating_sub(f + 2).max(1);
        let best = lowest(&scores_among(dists, k, &left, neighbours), 1)[0];
        picked.push(left.remove(best));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Squared distances between points on a line.
    fn line(points: &[f64]) -> Vec<f64> {
        points
            .iter()
            .flat_map(|a| points.iter().map(move |b| (a - b) * (a - b)))
            .collect()
    }

    #[test]
    fn krum_picks_the_centre_of_the_honest_cluster() {
        // Four honest points near 0, one attacker at 100; f = 1 scores on 2 neighbours.
        let d = line(&[0.0, 0.1, -0.1, 0.3, 100.0]);
        let s = krum_scores(&d, 5, 1).unwrap();
        assert!((s[0] - 0.02).abs() < 1e-12);
        assert_eq!(krum_select(&d, 5, 1, 1).unwrap(), vec![0]);
        let mut three = krum_select(&d, 5, 1, 3).unwrap();
        three.sort_unstable();
        assert_eq!(three, vec![0, 1, 2]);
        assert!(krum_scores(&d, 5, 2).is_err());
    }

    #[test]
    fn bulyan_never_picks_the_attackers() {
        let d = line(&[0.0, 0.1, -0.1, 0.3, -0.2, 0.2, 50.0, -60.0, 0.05, 0.15, 1e3]);
        let picked = bulyan_select(&d, 11, 2).unwrap();
        assert_eq!(picked.len(), 7);
        assert!(
            picked.iter().all(|&i| ![6, 7, 10].contains(&i)),
            "{picked:?}"
        );
        assert!(bulyan_select(&d, 11, 3).is_err());
    }
}
