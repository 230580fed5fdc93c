import MegatronCUDA
import MegatronParallel
import MegatronTensor

/// Collectives on whole tensors along any dimension, returning new tensors (never touching the input).
///
/// The communicator works on contiguous row blocks (dimension 0); other dimensions are moved to the front
/// and back. A failed collective ends the process with its message (`exitWithError`): the ranks can no longer
/// agree on what was computed, and these calls sit inside forward and backward passes that have no error path.
extension Communicator {
    /// The sum (or max) of `x` over the group.
    func allReduced(_ x: Tensor, _ op: MegatronParallel.ReduceOp = .sum) -> Tensor {
        let out = freshCopy(x)
        complete("all-reduce") { try allReduce(out, op: op) }
        return out
    }

    /// Every rank's `x` concatenated along `dim` in rank order.
    func allGathered(_ x: Tensor, dim: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        let front = movedToFront(x, d)
        var shape = front.shape
        shape[0] *= size
        let out = Tensor.zeros(shape, dtype: x.dtype, device: x.device)
        complete("all-gather") { try allGather(front, into: out) }
        return movedBack(out, d)
    }

    /// The sum of `x` over the group, of which this rank keeps its block along `dim`.
    func reduceScattered(_ x: Tensor, dim: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        precondition(x.size(d) % size == 0,
                     "reduce-scatter: dimension \(d) of size \(x.size(d)) does not split over \(size) ranks")
        let front = movedToFront(x, d)
        var shape = front.shape
        shape[0] /= size
        let out = Tensor.zeros(shape, dtype: x.dtype, device: x.device)
        complete("reduce-scatter") { try reduceScatter(front, into: out, op: .sum) }
        return movedBack(out, d)
    }

    /// This rank's block of `x` along `dim`.
    func localBlock(_ x: Tensor, dim: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        precondition(x.size(d) % size == 0, "split: dimension \(d) of size \(x.size(d)) does not split over \(size) ranks")
        let length = x.size(d) / size
        return freshCopy(x.narrowed(d, start: rank * length, length: length))
    }

    private func complete(_ operation: String, _ start: () throws -> CollectiveWork) {
        do {
            try start().wait()
        } catch {
            exitWithError("tensor-parallel \(operation) over \(size) ranks (rank \(rank)) failed: \(error)")
        }
    }
}

/// A contiguous copy that shares no storage with `x` (collectives write in place).
func freshCopy(_ x: Tensor) -> Tensor {
    let out = Tensor.zeros(x.shape, dtype: x.dtype, device: x.device)
    Ops.copy(x, into: out)
    return out
}

/// `x` with dimension `d` first, contiguous. A view when every dimension before `d` has size 1 (a micro-batch
/// of one sequence along the sequence dimension): the blocks along `d` are then already contiguous.
private func movedToFront(_ x: Tensor, _ d: Int) -> Tensor {
    var rest = x.shape
    rest.remove(at: d)
    if x.shape[..<d].allSatisfy({ $0 == 1 }) { return (x.isContiguous ? x : freshCopy(x)).reshaped([x.shape[d]] + rest) }
    var order = Array(0..<x.rank)
    order.remove(at: d)
    return freshCopy(x.permuted([d] + order))
}

/// Undoes `movedToFront`, contiguous.
private func movedBack(_ x: Tensor, _ d: Int) -> Tensor {
    var shape = Array(x.shape.dropFirst())
    shape.insert(x.shape[0], at: d)
    if shape[..<d].allSatisfy({ $0 == 1 }) { return x.reshaped(shape) }
    var order = Array(1..<x.rank)
    order.insert(0, at: d)
    return freshCopy(x.permuted(order))
}
