/// The cuDNN backend enum values MegatronCUDA uses, spelled as in cuDNN's `cudnn_graph.h` (cuDNN 9;
/// the values are part of its ABI and do not change between 9.x releases).
/// `scripts/fixtures/cudnn_enums.sh` prints them from the headers; `CuDNNEnumTests` compares these
/// raw values with that output (Tests/MegatronCUDATests/Fixtures/cudnn_enums.txt).
public enum CuDNNBackend {
    /// cudnnBackendDescriptorType_t
    public enum DescriptorType: Int32, CaseIterable, Sendable {
        case pointwise = 0                 // CUDNN_BACKEND_POINTWISE_DESCRIPTOR
        case engineConfig = 3              // CUDNN_BACKEND_ENGINECFG_DESCRIPTOR
        case engineHeuristics = 4          // CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR
        case executionPlan = 5             // CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
        case operationPointwise = 13       // CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
        case operationGraph = 15           // CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR
        case variantPack = 16              // CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR
        case tensor = 17                   // CUDNN_BACKEND_TENSOR_DESCRIPTOR
        case matmul = 18                   // CUDNN_BACKEND_MATMUL_DESCRIPTOR
        case operationMatmul = 19          // CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR
        case reduction = 21                // CUDNN_BACKEND_REDUCTION_DESCRIPTOR
        case operationReduction = 22       // CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR
        case operationReshape = 31         // CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR
        case rng = 32                      // CUDNN_BACKEND_RNG_DESCRIPTOR
        case operationRng = 33             // CUDNN_BACKEND_OPERATION_RNG_DESCRIPTOR
    }

    /// cudnnBackendAttributeType_t: the element type of an attribute's array.
    public enum AttributeType: Int32, CaseIterable, Sendable {
        case handle = 0                    // CUDNN_TYPE_HANDLE
        case dataType = 1                  // CUDNN_TYPE_DATA_TYPE
        case boolean = 2                   // CUDNN_TYPE_BOOLEAN
        case int64 = 3                     // CUDNN_TYPE_INT64
        case float = 4                     // CUDNN_TYPE_FLOAT
        case double = 5                    // CUDNN_TYPE_DOUBLE
        case voidPointer = 6               // CUDNN_TYPE_VOID_PTR
        case heuristicMode = 8             // CUDNN_TYPE_HEUR_MODE
        case pointwiseMode = 14            // CUDNN_TYPE_POINTWISE_MODE
        case backendDescriptor = 15        // CUDNN_TYPE_BACKEND_DESCRIPTOR
        case reductionOperator = 18        // CUDNN_TYPE_REDUCTION_OPERATOR_TYPE
        case int32 = 23                    // CUDNN_TYPE_INT32
        case rngDistribution = 29          // CUDNN_TYPE_RNG_DISTRIBUTION
    }

    /// cudnnBackendAttributeName_t
    public enum Attribute: Int32, CaseIterable, Sendable {
        case pointwiseMode = 0                     // CUDNN_ATTR_POINTWISE_MODE
        case pointwiseMathPrecision = 1            // CUDNN_ATTR_POINTWISE_MATH_PREC
        case pointwiseAxis = 9                     // CUDNN_ATTR_POINTWISE_AXIS
        case engineHeuristicsMode = 200            // CUDNN_ATTR_ENGINEHEUR_MODE
        case engineHeuristicsOperationGraph = 201  // CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH
        case engineHeuristicsResults = 202         // CUDNN_ATTR_ENGINEHEUR_RESULTS
        case engineConfigEngine = 300              // CUDNN_ATTR_ENGINECFG_ENGINE
        case executionPlanHandle = 400             // CUDNN_ATTR_EXECUTION_PLAN_HANDLE
        case executionPlanEngineConfig = 401       // CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG
        case executionPlanWorkspaceSize = 402      // CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE
        case operationPointwiseDescriptor = 750    // CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR
        case operationPointwiseX = 751             // CUDNN_ATTR_OPERATION_POINTWISE_XDESC
        case operationPointwiseB = 752             // CUDNN_ATTR_OPERATION_POINTWISE_BDESC
        case operationPointwiseY = 753             // CUDNN_ATTR_OPERATION_POINTWISE_YDESC
        case operationPointwiseT = 758             // CUDNN_ATTR_OPERATION_POINTWISE_TDESC
        case operationGraphHandle = 800            // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
        case operationGraphOperations = 801        // CUDNN_ATTR_OPERATIONGRAPH_OPS
        case tensorByteAlignment = 900             // CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT
        case tensorDataType = 901                  // CUDNN_ATTR_TENSOR_DATA_TYPE
        case tensorDimensions = 902                // CUDNN_ATTR_TENSOR_DIMENSIONS
        case tensorStrides = 903                   // CUDNN_ATTR_TENSOR_STRIDES
        case tensorUniqueID = 906                  // CUDNN_ATTR_TENSOR_UNIQUE_ID
        case tensorIsVirtual = 907                 // CUDNN_ATTR_TENSOR_IS_VIRTUAL
        case tensorIsByValue = 908                 // CUDNN_ATTR_TENSOR_IS_BY_VALUE
        case variantPackUniqueIDs = 1000           // CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS
        case variantPackDataPointers = 1001        // CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS
        case variantPackWorkspace = 1003           // CUDNN_ATTR_VARIANT_PACK_WORKSPACE
        case matmulComputeType = 1500              // CUDNN_ATTR_MATMUL_COMP_TYPE
        case operationMatmulA = 1520               // CUDNN_ATTR_OPERATION_MATMUL_ADESC
        case operationMatmulB = 1521               // CUDNN_ATTR_OPERATION_MATMUL_BDESC
        case operationMatmulC = 1522               // CUDNN_ATTR_OPERATION_MATMUL_CDESC
        case operationMatmulDescriptor = 1523      // CUDNN_ATTR_OPERATION_MATMUL_DESC
        case reductionOperator = 1600              // CUDNN_ATTR_REDUCTION_OPERATOR
        case reductionComputeType = 1601           // CUDNN_ATTR_REDUCTION_COMP_TYPE
        case operationReductionX = 1610            // CUDNN_ATTR_OPERATION_REDUCTION_XDESC
        case operationReductionY = 1611            // CUDNN_ATTR_OPERATION_REDUCTION_YDESC
        case operationReductionDescriptor = 1612   // CUDNN_ATTR_OPERATION_REDUCTION_DESC
        case operationReshapeX = 2200              // CUDNN_ATTR_OPERATION_RESHAPE_XDESC
        case operationReshapeY = 2201              // CUDNN_ATTR_OPERATION_RESHAPE_YDESC
        case rngDistribution = 2300                // CUDNN_ATTR_RNG_DISTRIBUTION
        case rngBernoulliProbability = 2305        // CUDNN_ATTR_RNG_BERNOULLI_DIST_PROBABILITY
        case operationRngY = 2310                  // CUDNN_ATTR_OPERATION_RNG_YDESC
        case operationRngSeed = 2311               // CUDNN_ATTR_OPERATION_RNG_SEED
        case operationRngDescriptor = 2312         // CUDNN_ATTR_OPERATION_RNG_DESC
        case operationRngOffset = 2313             // CUDNN_ATTR_OPERATION_RNG_OFFSET_DESC
    }

    /// cudnnDataType_t
    public enum DataType: Int32, CaseIterable, Sendable {
        case float = 0                     // CUDNN_DATA_FLOAT
        case half = 2                      // CUDNN_DATA_HALF
        case int32 = 4                     // CUDNN_DATA_INT32
        case bfloat16 = 9                  // CUDNN_DATA_BFLOAT16
        case int64 = 10                    // CUDNN_DATA_INT64
        case boolean = 11                  // CUDNN_DATA_BOOLEAN

        /// Bytes of one element in device memory (booleans only ever appear in virtual tensors).
        public var byteSize: Int {
            switch self {
            case .int64: return 8
            case .float, .int32: return 4
            case .half, .bfloat16: return 2
            case .boolean: return 1
            }
        }
    }

    /// cudnnPointwiseMode_t
    public enum PointwiseMode: Int32, CaseIterable, Sendable {
        case add = 0                       // CUDNN_POINTWISE_ADD
        case mul = 1                       // CUDNN_POINTWISE_MUL
        case div = 6                       // CUDNN_POINTWISE_DIV
        case sub = 9                       // CUDNN_POINTWISE_SUB
        case exp = 13                      // CUDNN_POINTWISE_EXP
        case log = 15                      // CUDNN_POINTWISE_LOG
        case identity = 21                 // CUDNN_POINTWISE_IDENTITY
        case compareGreaterEqual = 303     // CUDNN_POINTWISE_CMP_GE
        case generateIndex = 501           // CUDNN_POINTWISE_GEN_INDEX
        case binarySelect = 601            // CUDNN_POINTWISE_BINARY_SELECT
    }

    /// cudnnReduceTensorOp_t
    public enum ReductionOperator: Int32, CaseIterable, Sendable {
        case add = 0                       // CUDNN_REDUCE_TENSOR_ADD
        case max = 3                       // CUDNN_REDUCE_TENSOR_MAX
    }

    /// cudnnRngDistribution_t's Bernoulli (ones with the descriptor's probability): dropout's keep mask.
    public static let rngDistributionBernoulli: Int32 = 0     // CUDNN_RNG_DISTRIBUTION_BERNOULLI

    /// cudnnBackendHeurMode_t: mode A is the fast heuristic the frontend uses by default.
    public static let heuristicModeA: Int32 = 3                 // CUDNN_HEUR_MODE_A

    /// cudnnStatus_t values the code distinguishes.
    public static let statusSuccess: Int32 = 0                  // CUDNN_STATUS_SUCCESS
    public static let statusNotSupported: Int32 = 3000          // CUDNN_STATUS_NOT_SUPPORTED
}
