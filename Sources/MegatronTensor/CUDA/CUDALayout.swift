import MegatronCUDA

/// Operands of one elementwise kernel launch over a shared shape, simplified before launch: size-1
/// dimensions dropped and neighbouring dimensions merged wherever every operand steps through them
/// as one (a contiguous tensor becomes one dimension). Kernels then do less index arithmetic, and
/// views of any rank within the kernels' 8 dimensions still work after merging.
struct CollapsedLayout {
    var shape: [Int]
    var strides: [[Int]]

    init(shape: [Int], strides: [[Int]]) {
        var keptShape: [Int] = []
        var keptStrides = [[Int]](repeating: [], count: strides.count)
        for d in shape.indices where shape[d] != 1 {
            keptShape.append(shape[d])
            for k in strides.indices { keptStrides[k].append(strides[k][d]) }
        }
        var mergedShape: [Int] = []
        var mergedStrides = [[Int]](repeating: [], count: strides.count)
        for d in keptShape.indices {
            let canMerge = !mergedShape.isEmpty
                && keptStrides.indices.allSatisfy { keptStrides[$0][d] * keptShape[d] == mergedStrides[$0].last! }
            if canMerge {
                mergedShape[mergedShape.count - 1] *= keptShape[d]
                for k in strides.indices { mergedStrides[k][mergedStrides[k].count - 1] = keptStrides[k][d] }
            } else {
                mergedShape.append(keptShape[d])
                for k in strides.indices { mergedStrides[k].append(keptStrides[k][d]) }
            }
        }
        if mergedShape.isEmpty {   // a single element
            mergedShape = [1]
            mergedStrides = strides.map { _ in [0] }
        }
        (self.shape, self.strides) = (mergedShape, mergedStrides)
    }

    /// Kernel operands for `tensors` (all of this layout's shape before collapsing), in order.
    static func arguments(_ tensors: [Tensor]) -> [KernelArgument] {
        let layout = CollapsedLayout(shape: tensors[0].shape, strides: tensors.map(\.strides))
        return tensors.indices.map { i in
            .tensor(TensorKernelArgument(address: tensors[i].deviceAddress, shape: layout.shape, strides: layout.strides[i],
                                         dtype: tensors[i].dtype.kernelCode))
        }
    }
}
