// The op and dtype codes the tensor kernels (tensor_ops.cu) take as int arguments. This file is the one
// definition: the EmbedKernels plugin generates a Swift enum of Int32 raw values from each enum below
// (same name; each case named by its constant without the prefix, in lowerCamelCase: DT_BF16 -> .bf16,
// UNARY_GELU_TANH -> .geluTanh), which the launchers pass. Add a code here, never in Swift.

enum DTypeCode { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2, DT_F8E4M3 = 3, DT_F8E5M2 = 4, DT_I32 = 5, DT_I64 = 6, DT_BOOL = 7 };

enum BinaryOpCode {
    BINARY_ADD = 0, BINARY_SUB = 1, BINARY_MUL = 2, BINARY_DIV = 3, BINARY_MAXIMUM = 4, BINARY_MINIMUM = 5, BINARY_POW = 6
};

enum CompareOpCode {
    COMPARE_EQUAL = 0, COMPARE_NOT_EQUAL = 1, COMPARE_LESS = 2, COMPARE_LESS_EQUAL = 3, COMPARE_GREATER = 4,
    COMPARE_GREATER_EQUAL = 5
};

enum UnaryOpCode {
    UNARY_NEG = 0, UNARY_EXP = 1, UNARY_LOG = 2, UNARY_TANH = 3, UNARY_SQRT = 4, UNARY_RSQRT = 5, UNARY_ABS = 6,
    UNARY_SIGMOID = 7, UNARY_RELU = 8, UNARY_SILU = 9, UNARY_GELU_TANH = 10, UNARY_GELU_ERF = 11, UNARY_SQUARED_RELU = 12
};

enum ReduceOpCode { REDUCE_SUM = 0, REDUCE_MEAN = 1, REDUCE_MAX = 2 };
