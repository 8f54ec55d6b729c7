//! CenterFace output decoding and non-maximum suppression.
//!
//! CenterFace (Xu et al. 2019, "CenterFace: Joint Face Detection and
//! Alignment Using Face as Point", arXiv:1911.03599) treats a face as the
//! point at its box centre, in the manner of CenterNet (Zhou et al. 2019,
//! "Objects as Points"). On a feature map at stride 4 it predicts, per cell:
//!
//! * a heatmap: the probability that a face centre falls in this cell
//!   (a sigmoid is already applied inside the network);
//! * a scale: log of the box height and width, in units of the stride, so a
//!   box is `exp(s) * 4` pixels tall or wide;
//! * an offset: where in the cell the centre lies (y, x), in cells, which
//!   undoes the rounding of the centre to a stride-4 grid;
//! * landmarks: five points (eyes, nose tip, mouth corners) as (y, x) pairs,
//!   each a fraction of the box height and width from the box's top-left
//!   corner.
//!
//! The network's own outputs are all this module needs: it is pure Rust with
//! no dependencies so the browser page (onnxruntime-web + WebAssembly) and the
//! Python package decode identically.
//!
//! [`search`] is the whole face search built on these pieces (passes, tiles,
//! merging); [`resize`] makes the network's inputs. Only the network itself
//! runs outside this crate.

pub mod resize;
pub mod search;

pub use search::{NetworkInput, Progress, Search, Settings};

use crate::error::{Result, VeilError};

/// The feature map's stride in input pixels (section 3.1 of the paper).
pub const STRIDE_PX: f32 = 4.0;

/// Planes per output head, in the network's output order.
const SCALE_PLANES: usize = 2;
const OFFSET_PLANES: usize = 2;
const LANDMARK_PLANES: usize = 10;

/// One detected face, in pixels of the image the caller passed in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Face {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
    /// The heatmap value at the face centre, in `[0, 1]` for the real network.
    pub score: f32,
    /// Eye, eye, nose tip, mouth corner, mouth corner as `[x, y]`; of each
    /// pair the one on the image's left comes first (the order of the usual
    /// 5-point alignment template). Not clamped to the image: a face cut by
    /// the border can have an eye outside it, and aligning that face needs
    /// the true position.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        (self.right - self.left).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.bottom - self.top).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union of the two boxes, in `[0, 1]`; 0 when both are
    /// empty.
    pub fn iou(&self, other: &Face) -> f32 {
        let w = (self.right.min(other.right) - self.left.max(other.left)).max(0.0);
        let h = (self.bottom.min(other.bottom) - self.top.max(other.top)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            (inter / union).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The same face moved by `(dx, dy)` pixels: maps a face found in a tile
    /// back into the whole photo.
    pub fn translated(&self, dx: f32, dy: f32) -> Face {
        let mut landmarks = self.landmarks;
        for point in &mut landmarks {
            point[0] += dx;
            point[1] += dy;
        }
        Face {
            left: self.left + dx,
            top: self.top + dy,
            right: self.right + dx,
            bottom: self.bottom + dy,
            score: self.score,
            landmarks,
        }
    }

    pub(crate) fn is_finite(&self) -> bool {
        [self.left, self.top, self.right, self.bottom, self.score]
            .iter()
            .chain(self.landmarks.iter().flatten())
            .all(|v| v.is_finite())
    }
}

/// Decodes CenterFace's four outputs (batch 1, NCHW, each plane `rows x cols`)
/// into faces scoring above `score_threshold`, before any suppression.
///
/// * `heatmap`: 1 plane; `scale`: 2 planes (log height, log width);
///   `offset`: 2 planes (y, x); `landmarks`: 10 planes (y, x per point).
/// * `rows`, `cols`: the feature map size, the network input size / 4.
/// * `scale_x`, `scale_y`: original-image pixels per network-input pixel
///   (e.g. 2.0 when the photo was halved before detection).
///
/// Boxes are clamped to the network input's extent mapped back by the scales
/// (`cols * 4 * scale_x` by `rows * 4 * scale_y`); when the input was padded
/// the caller clamps again to the true image size. Cells whose decoded box is
/// not finite (a garbage or overflowing scale) are skipped, never returned.
#[allow(clippy::too_many_arguments)]
pub fn decode_centerface(
    heatmap: &[f32],
    scale: &[f32],
    offset: &[f32],
    landmarks: &[f32],
    rows: usize,
    cols: usize,
    score_threshold: f32,
    scale_x: f32,
    scale_y: f32,
) -> Result<Vec<Face>> {
    crate::error::check_range("score_threshold", score_threshold as f64, 0.0, 1.0)?;
    for (name, value) in [("scale_x", scale_x), ("scale_y", scale_y)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(VeilError::param(
                name,
                format!("must be a finite number above 0, got {value}"),
            ));
        }
    }
    let cells = rows
        .checked_mul(cols)
        .filter(|&n| n.checked_mul(LANDMARK_PLANES).is_some())
        .ok_or_else(|| {
            VeilError::InvalidImage(format!("feature map {rows}x{cols} is too large"))
        })?;
    for (name, data, planes) in [
        ("heatmap", heatmap, 1),
        ("scale", scale, SCALE_PLANES),
        ("offset", offset, OFFSET_PLANES),
        ("landmarks", landmarks, LANDMARK_PLANES),
    ] {
        if data.len() != cells * planes {
            return Err(VeilError::InvalidImage(format!(
                "CenterFace {name} output has {} values, expected {planes} x {rows} x {cols} = {}",
                data.len(),
                cells * planes
            )));
        }
    }

    // The extent of the network input in original-image pixels.
    let max_x = cols as f32 * STRIDE_PX * scale_x;
    let max_y = rows as f32 * STRIDE_PX * scale_y;
    let plane = |data: &[f32], p: usize, i: usize| data[p * cells + i];

    let mut faces = Vec::new();
    for (i, &score) in heatmap.iter().enumerate() {
        // Strictly above, so that threshold 1.0 means "nothing".
        if score.is_nan() || score <= score_threshold {
            continue;
        }
        let (row, col) = ((i / cols) as f32, (i % cols) as f32);
        let height = plane(scale, 0, i).exp() * STRIDE_PX;
        let width = plane(scale, 1, i).exp() * STRIDE_PX;
        // The cell's centre is at (index + 0.5) * stride; the offset refines it.
        let centre_y = (row + plane(offset, 0, i) + 0.5) * STRIDE_PX;
        let centre_x = (col + plane(offset, 1, i) + 0.5) * STRIDE_PX;
        let top = centre_y - height / 2.0;
        let left = centre_x - width / 2.0;

        let mut points = [[0.0f32; 2]; 5];
        for (k, point) in points.iter_mut().enumerate() {
            let y = top + plane(landmarks, 2 * k, i) * height;
            let x = left + plane(landmarks, 2 * k + 1, i) * width;
            *point = [x * scale_x, y * scale_y];
        }
        let face = Face {
            left: (left * scale_x).clamp(0.0, max_x),
            top: (top * scale_y).clamp(0.0, max_y),
            right: ((left + width) * scale_x).clamp(0.0, max_x),
            bottom: ((top + height) * scale_y).clamp(0.0, max_y),
            score,
            landmarks: points,
        };
        // An infinite size clamps to a finite box, so test before clamping
        // too: such a cell carries no usable geometry.
        if face.is_finite() && (height * scale_y).is_finite() && (width * scale_x).is_finite() {
            faces.push(face);
        }
    }
    Ok(faces)
}

/// Greedy non-maximum suppression: visits faces from the highest score down
/// and drops each one that overlaps an already kept face with IoU above
/// `iou_threshold`. Returns the kept faces sorted by score, highest first
/// (ties keep their input order). Faces with a non-finite coordinate or score
/// are dropped. A NaN threshold suppresses nothing; a threshold below 0
/// behaves as 0 (any overlap suppresses).
pub fn non_max_suppression(faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    // Not `max(0.0)`: that would turn NaN into 0.
    let iou_threshold = if iou_threshold < 0.0 {
        0.0
    } else {
        iou_threshold
    };
    let mut faces: Vec<Face> = faces.into_iter().filter(Face::is_finite).collect();
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::with_capacity(faces.len().min(256));
    for face in faces {
        // A NaN threshold makes every comparison false: nothing is suppressed.
        if !kept.iter().any(|k| k.iou(&face) > iou_threshold) {
            kept.push(face);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds zeroed output planes for a `rows x cols` map.
    fn planes(rows: usize, cols: usize) -> [Vec<f32>; 4] {
        let n = rows * cols;
        [
            vec![0.0; n],
            vec![0.0; 2 * n],
            vec![0.0; 2 * n],
            vec![0.0; 10 * n],
        ]
    }

    fn face(left: f32, top: f32, right: f32, bottom: f32, score: f32) -> Face {
        Face {
            left,
            top,
            right,
            bottom,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn decodes_one_synthetic_face() {
        let (rows, cols) = (8, 10);
        let [mut heat, mut scale, mut offset, mut lms] = planes(rows, cols);
        let i = 3 * cols + 4; // row 3, col 4
        let n = rows * cols;
        heat[i] = 0.9;
        scale[i] = (16.0f32 / 4.0).ln(); // 16 px tall
        scale[n + i] = (8.0f32 / 4.0).ln(); // 8 px wide
        offset[i] = 0.25; // y
        offset[n + i] = -0.5; // x
        for k in 0..5 {
            lms[2 * k * n + i] = 0.5; // y: half the height down
            lms[(2 * k + 1) * n + i] = 0.25 * k as f32; // x
        }
        let faces =
            decode_centerface(&heat, &scale, &offset, &lms, rows, cols, 0.5, 2.0, 3.0).unwrap();
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        // Centre in network px: y = (3 + 0.25 + 0.5) * 4 = 15, x = (4 - 0.5 + 0.5) * 4 = 16.
        let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
        assert!(close(f.left, (16.0 - 4.0) * 2.0), "{f:?}");
        assert!(close(f.right, (16.0 + 4.0) * 2.0), "{f:?}");
        assert!(close(f.top, (15.0 - 8.0) * 3.0), "{f:?}");
        assert!(close(f.bottom, (15.0 + 8.0) * 3.0), "{f:?}");
        assert_eq!(f.score, 0.9);
        for k in 0..5 {
            assert!(close(
                f.landmarks[k][0],
                (12.0 + 0.25 * k as f32 * 8.0) * 2.0
            ));
            assert!(close(f.landmarks[k][1], (7.0 + 8.0) * 3.0));
        }
    }

    #[test]
    fn threshold_is_strict_and_empty_maps_are_fine() {
        let [mut heat, scale, offset, lms] = planes(2, 2);
        heat[0] = 0.5;
        let at = |t| {
            decode_centerface(&heat, &scale, &offset, &lms, 2, 2, t, 1.0, 1.0)
                .unwrap()
                .len()
        };
        assert_eq!(at(0.5), 0);
        assert_eq!(at(0.49), 1);
        assert_eq!(at(1.0), 0);
        let none = decode_centerface(&[], &[], &[], &[], 0, 7, 0.5, 1.0, 1.0).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn boxes_are_clamped_to_the_input_extent() {
        let [mut heat, mut scale, offset, lms] = planes(4, 4);
        heat[0] = 0.9;
        scale[0] = 10.0; // huge
        scale[16] = 10.0;
        let f = decode_centerface(&heat, &scale, &offset, &lms, 4, 4, 0.5, 1.5, 1.5).unwrap()[0];
        assert_eq!((f.left, f.top, f.right, f.bottom), (0.0, 0.0, 24.0, 24.0));
    }

    #[test]
    fn overflowing_or_nan_cells_are_skipped() {
        let [mut heat, mut scale, mut offset, lms] = planes(1, 3);
        heat.fill(0.9);
        scale[0] = 1000.0; // exp overflows to infinity
        offset[1] = f32::NAN;
        let faces = decode_centerface(&heat, &scale, &offset, &lms, 1, 3, 0.5, 1.0, 1.0).unwrap();
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].left, 8.0);
    }

    #[test]
    fn bad_lengths_and_parameters_are_errors() {
        let [heat, scale, offset, lms] = planes(3, 3);
        let err =
            decode_centerface(&heat[1..], &scale, &offset, &lms, 3, 3, 0.5, 1.0, 1.0).unwrap_err();
        assert!(matches!(err, VeilError::InvalidImage(_)), "{err:?}");
        assert!(err.to_string().contains("heatmap"));
        let err =
            decode_centerface(&heat, &scale, &offset, &lms[1..], 3, 3, 0.5, 1.0, 1.0).unwrap_err();
        assert!(err.to_string().contains("landmarks"));
        for (t, sx, sy, name) in [
            (f32::NAN, 1.0, 1.0, "score_threshold"),
            (1.5, 1.0, 1.0, "score_threshold"),
            (-0.1, 1.0, 1.0, "score_threshold"),
            (0.5, 0.0, 1.0, "scale_x"),
            (0.5, 1.0, f32::INFINITY, "scale_y"),
        ] {
            let err = decode_centerface(&heat, &scale, &offset, &lms, 3, 3, t, sx, sy).unwrap_err();
            assert!(
                matches!(err, VeilError::InvalidParameter { name: n, .. } if n == name),
                "{err:?}"
            );
        }
        let err = decode_centerface(&[], &[], &[], &[], usize::MAX, 2, 0.5, 1.0, 1.0).unwrap_err();
        assert!(matches!(err, VeilError::InvalidImage(_)));
    }

    #[test]
    fn nms_keeps_the_best_of_an_overlapping_pair() {
        let a = face(0.0, 0.0, 10.0, 10.0, 0.6);
        let b = face(1.0, 1.0, 11.0, 11.0, 0.9); // IoU 81/119 = 0.68 with a
        let c = face(20.0, 20.0, 30.0, 30.0, 0.7);
        let kept = non_max_suppression(vec![a, b, c], 0.3);
        assert_eq!(kept, vec![b, c]);
        // Above the pair's IoU both survive, sorted by score.
        assert_eq!(non_max_suppression(vec![a, b, c], 0.7), vec![b, c, a]);
        assert!(non_max_suppression(vec![], 0.3).is_empty());
    }

    #[test]
    fn nms_drops_non_finite_faces_and_handles_odd_thresholds() {
        let a = face(0.0, 0.0, 10.0, 10.0, 0.6);
        let nan = face(0.0, f32::NAN, 10.0, 10.0, 0.9);
        let far = face(50.0, 0.0, 60.0, 10.0, 0.5);
        assert_eq!(non_max_suppression(vec![nan, a], 0.3), vec![a]);
        assert_eq!(non_max_suppression(vec![a, a], f32::NAN), vec![a, a]);
        assert_eq!(non_max_suppression(vec![a, far], -1.0), vec![a, far]);
        assert_eq!(non_max_suppression(vec![a, a], -1.0), vec![a]);
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = face(0.0, 0.0, 2.0, 2.0, 1.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&face(1.0, 0.0, 3.0, 2.0, 1.0)), 2.0 / 6.0);
        assert_eq!(a.iou(&face(5.0, 5.0, 6.0, 6.0, 1.0)), 0.0);
        let empty = face(1.0, 1.0, 1.0, 1.0, 1.0);
        assert_eq!(empty.iou(&empty), 0.0);
        let moved = a.translated(3.0, 4.0);
        assert_eq!(
            (moved.left, moved.top, moved.right, moved.bottom),
            (3.0, 4.0, 5.0, 6.0)
        );
        assert_eq!(moved.landmarks[2], [3.0, 4.0]);
    }

    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -20.0f32..20.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => any::<f32>(),
        ]
    }

    fn any_face() -> impl Strategy<Value = Face> {
        (
            0.0f32..100.0,
            0.0f32..100.0,
            0.0f32..60.0,
            0.0f32..60.0,
            0.0f32..1.0,
        )
            .prop_map(|(l, t, w, h, s)| face(l, t, l + w, t + h, s))
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_any_lengths(
            rows in 0usize..6, cols in 0usize..6,
            lens in proptest::collection::vec(0usize..400, 4),
            threshold in any_f32(), sx in any_f32(), sy in any_f32(),
        ) {
            let buf = vec![0.7f32; 400];
            let _ = decode_centerface(&buf[..lens[0]], &buf[..lens[1]], &buf[..lens[2]], &buf[..lens[3]], rows, cols, threshold, sx, sy);
        }

        #[test]
        fn decoded_boxes_are_finite_ordered_and_in_bounds(
            rows in 1usize..8, cols in 1usize..8,
            values in proptest::collection::vec(any_f32(), 15 * 64),
            threshold in 0.0f32..1.0, sx in 0.01f32..10.0, sy in 0.01f32..10.0,
        ) {
            let n = rows * cols;
            let (heat, rest) = values.split_at(n);
            let (scale, rest) = rest.split_at(2 * n);
            let (offset, rest) = rest.split_at(2 * n);
            let lms = &rest[..10 * n];
            let faces = decode_centerface(heat, scale, offset, lms, rows, cols, threshold, sx, sy).unwrap();
            let (max_x, max_y) = (cols as f32 * 4.0 * sx, rows as f32 * 4.0 * sy);
            for f in &faces {
                prop_assert!(f.is_finite());
                prop_assert!(f.score > threshold);
                prop_assert!(0.0 <= f.left && f.left <= f.right && f.right <= max_x, "{f:?}");
                prop_assert!(0.0 <= f.top && f.top <= f.bottom && f.bottom <= max_y, "{f:?}");
            }
            prop_assert!(faces.len() <= n);
        }

        #[test]
        fn nms_is_sorted_idempotent_and_a_subset(
            faces in proptest::collection::vec(any_face(), 0..40), threshold in 0.0f32..1.0,
        ) {
            let kept = non_max_suppression(faces.clone(), threshold);
            prop_assert!(kept.windows(2).all(|w| w[0].score >= w[1].score));
            prop_assert!(kept.iter().all(|k| faces.contains(k)));
            for (i, a) in kept.iter().enumerate() {
                for b in &kept[i + 1..] {
                    prop_assert!(a.iou(b) <= threshold);
                }
            }
            prop_assert_eq!(non_max_suppression(kept.clone(), threshold), kept.clone());
            // The best face always survives.
            if let Some(best) = faces.iter().map(|f| f.score).reduce(f32::max) {
                prop_assert_eq!(kept[0].score, best);
            }
        }

        #[test]
        fn nms_never_panics_on_garbage(
            values in proptest::collection::vec(any_f32(), 0..100), threshold in any_f32(),
        ) {
            let faces: Vec<Face> = values.chunks_exact(5).map(|c| face(c[0], c[1], c[2], c[3], c[4])).collect();
            let kept = non_max_suppression(faces, threshold);
            prop_assert!(kept.iter().all(Face::is_finite));
        }

        #[test]
        fn iou_is_symmetric_and_bounded(a in any_face(), b in any_face()) {
            let (ab, ba) = (a.iou(&b), b.iou(&a));
            prop_assert!((0.0..=1.0).contains(&ab));
            prop_assert!((ab - ba).abs() < 1e-6);
        }
    }
}
