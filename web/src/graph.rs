//! Layered layout of a flow's DAG for the editor's SVG: node 0 is the trigger, every other node
//! sits one layer below its deepest dependency (longest path from the trigger), nodes in a layer
//! are ordered by the mean position of their parents to keep edges short, and edges are smooth
//! cubic curves from the bottom of a parent to the top of a child.

pub const NODE_W: i32 = 232;
pub const NODE_H: i32 = 62;
const GAP_X: i32 = 36;
const GAP_Y: i32 = 56;
const MARGIN: i32 = 24;

/// Where each node goes, and the size of the drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Top-left corner of each node.
    pub pos: Vec<(i32, i32)>,
    pub width: i32,
    pub height: i32,
}

/// `deps[i]`: the nodes node `i` runs after. Node 0 (the trigger) has none; a step without
/// dependencies hangs off the trigger. Cycles cannot occur (validation refuses them) but are
/// tolerated: a node in one is put in the last layer.
pub fn layout(deps: &[Vec<usize>]) -> Layout {
    let n = deps.len();
    let mut layer = vec![usize::MAX; n];
    fn depth(i: usize, deps: &[Vec<usize>], layer: &mut [usize], guard: usize) -> usize {
        if layer[i] != usize::MAX {
            return layer[i];
        }
        if i == 0 {
            layer[0] = 0;
            return 0;
        }
        if guard > deps.len() {
            return deps.len();
        }
        let d = deps[i]
            .iter()
            .filter(|&&p| p < deps.len() && p != i)
            .map(|&p| depth(p, deps, layer, guard + 1) + 1)
            .max()
            .unwrap_or(1)
            .max(1);
        layer[i] = d;
        d
    }
    for i in 0..n {
        depth(i, deps, &mut layer, 0);
    }
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, &l) in layer.iter().enumerate() {
        rows[l].push(i);
    }
    // Order each row by the mean column of its parents (barycentre), stable by document order.
    let mut col = vec![0f64; n];
    for row in rows.iter_mut() {
        let key = |i: &usize| -> f64 {
            let parents: Vec<f64> = deps[*i]
                .iter()
                .filter(|&&p| p < n)
                .map(|&p| col[p])
                .collect();
            if parents.is_empty() {
                0.0
            } else {
                parents.iter().sum::<f64>() / parents.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|i| (key(i), *i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *row = keyed.into_iter().map(|(_, i)| i).collect();
        for (c, &i) in row.iter().enumerate() {
            col[i] = c as f64 - (row.len() as f64 - 1.0) / 2.0;
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as i32;
    let width = MARGIN * 2 + widest * NODE_W + (widest - 1) * GAP_X;
    let height = MARGIN * 2 + layers as i32 * NODE_H + (layers as i32 - 1).max(0) * GAP_Y + 28;
    let mut pos = vec![(0, 0); n];
    for (l, row) in rows.iter().enumerate() {
        let row_w = row.len() as i32 * NODE_W + (row.len() as i32 - 1).max(0) * GAP_X;
        let x0 = (width - row_w) / 2;
        for (c, &i) in row.iter().enumerate() {
            pos[i] = (
                x0 + c as i32 * (NODE_W + GAP_X),
                MARGIN + l as i32 * (NODE_H + GAP_Y),
            );
        }
    }
    Layout { pos, width, height }
}

/// The SVG path of an edge from the bottom centre of `from` to the top centre of `to`, and the
/// point halfway along it.
pub fn edge(from: (i32, i32), to: (i32, i32)) -> (String, (i32, i32)) {
    let (x1, y1) = (from.0 + NODE_W / 2, from.1 + NODE_H);
    let (x2, y2) = (to.0 + NODE_W / 2, to.1);
    let dy = ((y2 - y1) / 2).max(20);
    let d = format!(
        "M{x1} {y1} C{x1} {} {x2} {} {x2} {}",
        y1 + dy,
        y2 - dy,
        y2 - 6
    );
    (d, ((x1 + x2) / 2, (y1 + y2) / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_the_longest_path() {
        // trigger → a → b, a → c, and d after b and c.
        let deps = vec![vec![], vec![0], vec![1], vec![1], vec![2, 3]];
        let l = layout(&deps);
        let ys: Vec<i32> = l.pos.iter().map(|p| p.1).collect();
        assert!(ys[0] < ys[1] && ys[1] < ys[2] && ys[2] == ys[3] && ys[3] < ys[4]);
        assert_ne!(l.pos[2].0, l.pos[3].0, "siblings side by side");
        assert!(l.width >= 2 * NODE_W);
    }

    #[test]
    fn steps_without_deps_hang_off_the_trigger() {
        let l = layout(&[vec![], vec![], vec![]]);
        assert_eq!(l.pos[1].1, l.pos[2].1);
        assert!(l.pos[1].1 > l.pos[0].1);
    }

    #[test]
    fn edges_are_curves_between_nodes() {
        let (d, mid) = edge((0, 0), (0, 200));
        assert!(d.starts_with("M116 62 C"), "{d}");
        assert_eq!(mid, (116, 131));
    }
}
