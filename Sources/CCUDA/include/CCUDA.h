// Declarations of the CUDA driver API, NVRTC, cuBLASLt, NCCL and cuDNN symbols that MegatronCUDA calls.
//
// Written from the documented ABI (CUDA 12/13): no CUDA header is needed to build, and nothing
// here links against a CUDA library. The libraries are opened with dlopen at first GPU use
// (ccuda_load_*), so the same binary runs on machines without a GPU.
#ifndef CCUDA_H
#define CCUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Pointers are non-null unless marked _Nullable; pointers to handles (out parameters) are spelled
// `Handle _Nullable *_Nonnull`.
#pragma clang assume_nonnull begin

// MARK: - Driver API types

typedef int CUresult;                  // CUDA_SUCCESS == 0
typedef int CUdevice;
typedef uint64_t CUdeviceptr;          // CUdeviceptr_v2 (64-bit on every supported platform)
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;

enum {
    CCUDA_SUCCESS = 0,
    CCUDA_ERROR_OUT_OF_MEMORY = 2,
    CCUDA_ERROR_NO_DEVICE = 100,
    CCUDA_ERROR_NOT_READY = 600,
};

// CUdevice_attribute values used.
enum {
    CCU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CCU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
    CCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CCU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

// CUfunction_attribute values used.
enum {
    CCU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
};

enum {
    CCU_STREAM_NON_BLOCKING = 1,
    CCU_EVENT_DEFAULT = 0,
    CCU_EVENT_DISABLE_TIMING = 2,
};

typedef CUresult (*PFN_cuInit)(unsigned int flags);
typedef CUresult (*PFN_cuDriverGetVersion)(int *version);
typedef CUresult (*PFN_cuGetErrorName)(CUresult error, const char *_Nullable *_Nonnull name);
typedef CUresult (*PFN_cuGetErrorString)(CUresult error, const char *_Nullable *_Nonnull text);
typedef CUresult (*PFN_cuDeviceGetCount)(int *count);
typedef CUresult (*PFN_cuDeviceGet)(CUdevice *device, int ordinal);
typedef CUresult (*PFN_cuDeviceGetName)(char *name, int length, CUdevice device);
typedef CUresult (*PFN_cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
typedef CUresult (*PFN_cuDeviceTotalMem)(size_t *bytes, CUdevice device);
typedef CUresult (*PFN_cuDevicePrimaryCtxRetain)(CUcontext _Nullable *_Nonnull context, CUdevice device);
typedef CUresult (*PFN_cuDevicePrimaryCtxRelease)(CUdevice device);
typedef CUresult (*PFN_cuCtxSetCurrent)(CUcontext context);
typedef CUresult (*PFN_cuCtxSynchronize)(void);
typedef CUresult (*PFN_cuMemGetInfo)(size_t *free, size_t *total);
typedef CUresult (*PFN_cuMemAlloc)(CUdeviceptr *pointer, size_t bytes);
typedef CUresult (*PFN_cuMemFree)(CUdeviceptr pointer);
typedef CUresult (*PFN_cuMemAllocHost)(void *_Nullable *_Nonnull pointer, size_t bytes);
typedef CUresult (*PFN_cuMemFreeHost)(void *pointer);
typedef CUresult (*PFN_cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream);
typedef CUresult (*PFN_cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream stream);
typedef CUresult (*PFN_cuMemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream);
typedef CUresult (*PFN_cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream);
typedef CUresult (*PFN_cuStreamCreate)(CUstream _Nullable *_Nonnull stream, unsigned int flags);
typedef CUresult (*PFN_cuStreamDestroy)(CUstream stream);
typedef CUresult (*PFN_cuStreamSynchronize)(CUstream stream);
typedef CUresult (*PFN_cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned int flags);
typedef CUresult (*PFN_cuEventCreate)(CUevent _Nullable *_Nonnull event, unsigned int flags);
typedef CUresult (*PFN_cuEventDestroy)(CUevent event);
typedef CUresult (*PFN_cuEventRecord)(CUevent event, CUstream stream);
typedef CUresult (*PFN_cuEventQuery)(CUevent event);
typedef CUresult (*PFN_cuEventSynchronize)(CUevent event);
typedef CUresult (*PFN_cuEventElapsedTime)(float *milliseconds, CUevent start, CUevent end);
typedef CUresult (*PFN_cuModuleLoadData)(CUmodule _Nullable *_Nonnull module, const void *image);
typedef CUresult (*PFN_cuModuleUnload)(CUmodule module);
typedef CUresult (*PFN_cuModuleGetFunction)(CUfunction _Nullable *_Nonnull function, CUmodule module, const char *name);
typedef CUresult (*PFN_cuFuncSetAttribute)(CUfunction function, int attribute, int value);
typedef CUresult (*PFN_cuLaunchKernel)(CUfunction function,
    unsigned int gridX, unsigned int gridY, unsigned int gridZ,
    unsigned int blockX, unsigned int blockY, unsigned int blockZ,
    unsigned int sharedMemoryBytes, CUstream stream, void *_Nullable *_Nullable parameters, void *_Nullable *_Nullable extra);

/// The driver entry points, resolved by ccuda_load_driver. Versioned symbols (_v2) are the ones
/// the CUDA headers map the plain names to since CUDA 3.2/4.0; the plain v1 symbols are 32-bit legacy.
typedef struct CCUDADriver {
    void *_Nullable library;   // NULL when loading failed
    PFN_cuInit cuInit;
    PFN_cuDriverGetVersion cuDriverGetVersion;
    PFN_cuGetErrorName cuGetErrorName;
    PFN_cuGetErrorString cuGetErrorString;
    PFN_cuDeviceGetCount cuDeviceGetCount;
    PFN_cuDeviceGet cuDeviceGet;
    PFN_cuDeviceGetName cuDeviceGetName;
    PFN_cuDeviceGetAttribute cuDeviceGetAttribute;
    PFN_cuDeviceTotalMem cuDeviceTotalMem;
    PFN_cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRetain;
    PFN_cuDevicePrimaryCtxRelease cuDevicePrimaryCtxRelease;
    PFN_cuCtxSetCurrent cuCtxSetCurrent;
    PFN_cuCtxSynchronize cuCtxSynchronize;
    PFN_cuMemGetInfo cuMemGetInfo;
    PFN_cuMemAlloc cuMemAlloc;
    PFN_cuMemFree cuMemFree;
    PFN_cuMemAllocHost cuMemAllocHost;
    PFN_cuMemFreeHost cuMemFreeHost;
    PFN_cuMemcpyHtoDAsync cuMemcpyHtoDAsync;
    PFN_cuMemcpyDtoHAsync cuMemcpyDtoHAsync;
    PFN_cuMemcpyDtoDAsync cuMemcpyDtoDAsync;
    PFN_cuMemsetD8Async cuMemsetD8Async;
    PFN_cuStreamCreate cuStreamCreate;
    PFN_cuStreamDestroy cuStreamDestroy;
    PFN_cuStreamSynchronize cuStreamSynchronize;
    PFN_cuStreamWaitEvent cuStreamWaitEvent;
    PFN_cuEventCreate cuEventCreate;
    PFN_cuEventDestroy cuEventDestroy;
    PFN_cuEventRecord cuEventRecord;
    PFN_cuEventQuery cuEventQuery;
    PFN_cuEventSynchronize cuEventSynchronize;
    PFN_cuEventElapsedTime cuEventElapsedTime;
    PFN_cuModuleLoadData cuModuleLoadData;
    PFN_cuModuleUnload cuModuleUnload;
    PFN_cuModuleGetFunction cuModuleGetFunction;
    PFN_cuFuncSetAttribute cuFuncSetAttribute;
    PFN_cuLaunchKernel cuLaunchKernel;
} CCUDADriver;

// MARK: - NVRTC

typedef int nvrtcResult;               // NVRTC_SUCCESS == 0
typedef struct _nvrtcProgram *nvrtcProgram;

typedef const char *_Nonnull (*PFN_nvrtcGetErrorString)(nvrtcResult result);
typedef nvrtcResult (*PFN_nvrtcVersion)(int *major, int *minor);
typedef nvrtcResult (*PFN_nvrtcCreateProgram)(nvrtcProgram _Nullable *_Nonnull program, const char *source, const char *_Nullable name,
    int headerCount, const char *const _Nonnull *_Nullable headers, const char *const _Nonnull *_Nullable includeNames);
typedef nvrtcResult (*PFN_nvrtcDestroyProgram)(nvrtcProgram _Nullable *_Nonnull program);
typedef nvrtcResult (*PFN_nvrtcCompileProgram)(nvrtcProgram program, int optionCount, const char *const _Nonnull *_Nullable options);
typedef nvrtcResult (*PFN_nvrtcGetSize)(nvrtcProgram program, size_t *bytes);
typedef nvrtcResult (*PFN_nvrtcGetBytes)(nvrtcProgram program, char *buffer);

typedef struct CCUDANVRTC {
    void *_Nullable library;   // NULL when loading failed
    PFN_nvrtcGetErrorString nvrtcGetErrorString;
    PFN_nvrtcVersion nvrtcVersion;
    PFN_nvrtcCreateProgram nvrtcCreateProgram;
    PFN_nvrtcDestroyProgram nvrtcDestroyProgram;
    PFN_nvrtcCompileProgram nvrtcCompileProgram;
    PFN_nvrtcGetSize nvrtcGetCUBINSize;
    PFN_nvrtcGetBytes nvrtcGetCUBIN;
    PFN_nvrtcGetSize nvrtcGetPTXSize;
    PFN_nvrtcGetBytes nvrtcGetPTX;
    PFN_nvrtcGetSize nvrtcGetProgramLogSize;
    PFN_nvrtcGetBytes nvrtcGetProgramLog;
} CCUDANVRTC;

// MARK: - cuBLASLt

typedef int cublasStatus_t;            // CUBLAS_STATUS_SUCCESS == 0
typedef struct cublasLtContext *cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque *cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque *cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque *cublasLtMatmulPreference_t;

typedef struct cublasLtMatmulAlgo_t {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

// cudaDataType_t values used.
enum {
    CCUDA_R_32F = 0,
    CCUDA_R_16F = 2,
    CCUDA_R_16BF = 14,
};

// cublasComputeType_t, cublasOperation_t.
enum {
    CCUBLAS_COMPUTE_32F = 68,
    CCUBLAS_OP_N = 0,
    CCUBLAS_OP_T = 1,
};

// cublasLtMatmulDescAttributes_t values used.
enum {
    CCUBLASLT_MATMUL_DESC_TRANSA = 3,
    CCUBLASLT_MATMUL_DESC_TRANSB = 4,
    CCUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CCUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CCUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,
    CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
    CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE = 13,
    CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE = 22,
    CCUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
};

// cublasLtEpilogue_t values used.
enum {
    CCUBLASLT_EPILOGUE_DEFAULT = 1,
    CCUBLASLT_EPILOGUE_BIAS = 4,
    CCUBLASLT_EPILOGUE_GELU = 32,
    CCUBLASLT_EPILOGUE_GELU_BIAS = 36,
    CCUBLASLT_EPILOGUE_GELU_AUX = 160,
    CCUBLASLT_EPILOGUE_GELU_AUX_BIAS = 164,
    CCUBLASLT_EPILOGUE_DGELU = 192,
    CCUBLASLT_EPILOGUE_DGELU_BGRAD = 208,
    CCUBLASLT_EPILOGUE_BGRADA = 256,
    CCUBLASLT_EPILOGUE_BGRADB = 512,
};

// cublasLtMatrixLayoutAttribute_t and cublasLtMatmulPreferenceAttributes_t values used.
enum {
    CCUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CCUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
    CCUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CCUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,
};

// cublasLtReductionScheme_t: how split-K partial sums are reduced.
enum {
    CCUBLASLT_REDUCTION_SCHEME_NONE = 0,
    CCUBLASLT_REDUCTION_SCHEME_INPLACE = 1,
    CCUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2,
    CCUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4,
};

typedef size_t (*PFN_cublasLtGetVersion)(void);
typedef const char *_Nonnull (*PFN_cublasLtGetStatusString)(cublasStatus_t status);
typedef cublasStatus_t (*PFN_cublasLtCreate)(cublasLtHandle_t _Nullable *_Nonnull handle);
typedef cublasStatus_t (*PFN_cublasLtDestroy)(cublasLtHandle_t handle);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescCreate)(cublasLtMatmulDesc_t _Nullable *_Nonnull desc, int computeType, int scaleType);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescDestroy)(cublasLtMatmulDesc_t desc);
typedef cublasStatus_t (*PFN_cublasLtMatmulDescSetAttribute)(cublasLtMatmulDesc_t desc, int attribute,
    const void *value, size_t bytes);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutCreate)(cublasLtMatrixLayout_t _Nullable *_Nonnull layout, int dataType,
    uint64_t rows, uint64_t cols, int64_t leadingDimension);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutDestroy)(cublasLtMatrixLayout_t layout);
typedef cublasStatus_t (*PFN_cublasLtMatrixLayoutSetAttribute)(cublasLtMatrixLayout_t layout, int attribute,
    const void *value, size_t bytes);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceCreate)(cublasLtMatmulPreference_t _Nullable *_Nonnull preference);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceDestroy)(cublasLtMatmulPreference_t preference);
typedef cublasStatus_t (*PFN_cublasLtMatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t preference,
    int attribute, const void *value, size_t bytes);
typedef cublasStatus_t (*PFN_cublasLtMatmulAlgoGetHeuristic)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
    cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
    cublasLtMatmulPreference_t preference, int requestedCount, cublasLtMatmulHeuristicResult_t *results,
    int *returnedCount);
typedef cublasStatus_t (*PFN_cublasLtMatmul)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
    const void *alpha, const void *a, cublasLtMatrixLayout_t aLayout, const void *b, cublasLtMatrixLayout_t bLayout,
    const void *beta, const void *_Nullable c, cublasLtMatrixLayout_t cLayout, void *d, cublasLtMatrixLayout_t dLayout,
    const cublasLtMatmulAlgo_t *algo, void *_Nullable workspace, size_t workspaceBytes, CUstream stream);

typedef struct CCUDACublasLt {
    void *_Nullable library;   // NULL when loading failed
    PFN_cublasLtGetVersion cublasLtGetVersion;
    PFN_cublasLtGetStatusString _Nullable cublasLtGetStatusString;   // NULL on old releases
    PFN_cublasLtCreate cublasLtCreate;
    PFN_cublasLtDestroy cublasLtDestroy;
    PFN_cublasLtMatmulDescCreate cublasLtMatmulDescCreate;
    PFN_cublasLtMatmulDescDestroy cublasLtMatmulDescDestroy;
    PFN_cublasLtMatmulDescSetAttribute cublasLtMatmulDescSetAttribute;
    PFN_cublasLtMatrixLayoutCreate cublasLtMatrixLayoutCreate;
    PFN_cublasLtMatrixLayoutDestroy cublasLtMatrixLayoutDestroy;
    PFN_cublasLtMatrixLayoutSetAttribute cublasLtMatrixLayoutSetAttribute;
    PFN_cublasLtMatmulPreferenceCreate cublasLtMatmulPreferenceCreate;
    PFN_cublasLtMatmulPreferenceDestroy cublasLtMatmulPreferenceDestroy;
    PFN_cublasLtMatmulPreferenceSetAttribute cublasLtMatmulPreferenceSetAttribute;
    PFN_cublasLtMatmulAlgoGetHeuristic cublasLtMatmulAlgoGetHeuristic;
    PFN_cublasLtMatmul cublasLtMatmul;
} CCUDACublasLt;

// MARK: - NCCL

typedef int ncclResult_t;              // ncclSuccess == 0
typedef struct ncclComm *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;

// ncclDataType_t values used.
enum {
    CNCCL_UINT8 = 1,
    CNCCL_INT32 = 2,
    CNCCL_INT64 = 4,
    CNCCL_FLOAT16 = 6,
    CNCCL_FLOAT32 = 7,
    CNCCL_BFLOAT16 = 9,
    CNCCL_FLOAT8E4M3 = 10,   // NCCL 2.24+
    CNCCL_FLOAT8E5M2 = 11,   // NCCL 2.24+
};

// ncclRedOp_t values used.
enum {
    CNCCL_SUM = 0,
    CNCCL_MAX = 2,
    CNCCL_AVG = 4,           // NCCL 2.10+
};

// ncclScalarResidence_t of ncclRedOpCreatePreMulSum: the scalar is read from host memory at the call.
enum { CNCCL_SCALAR_HOST_IMMEDIATE = 1 };

typedef ncclResult_t (*PFN_ncclGetUniqueId)(ncclUniqueId *uniqueId);
typedef ncclResult_t (*PFN_ncclCommInitRank)(ncclComm_t _Nullable *_Nonnull comm, int nranks, ncclUniqueId commId, int rank);
typedef ncclResult_t (*PFN_ncclCommInitAll)(ncclComm_t _Nullable *_Nonnull comms, int ndev, const int *_Nullable devlist);
typedef ncclResult_t (*PFN_ncclCommSplit)(ncclComm_t comm, int color, int key, ncclComm_t _Nullable *_Nonnull newcomm,
    void *_Nullable config);
typedef ncclResult_t (*PFN_ncclAllReduce)(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op,
    ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclAllGather)(const void *sendbuff, void *recvbuff, size_t sendcount, int datatype,
    ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclReduceScatter)(const void *sendbuff, void *recvbuff, size_t recvcount, int datatype,
    int op, ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclBroadcast)(const void *sendbuff, void *recvbuff, size_t count, int datatype, int root,
    ncclComm_t comm, CUstream stream);
typedef ncclResult_t (*PFN_ncclSend)(const void *sendbuff, size_t count, int datatype, int peer, ncclComm_t comm,
    CUstream stream);
typedef ncclResult_t (*PFN_ncclRecv)(void *recvbuff, size_t count, int datatype, int peer, ncclComm_t comm,
    CUstream stream);
typedef ncclResult_t (*PFN_ncclRedOpCreatePreMulSum)(int *op, void *scalar, int datatype, int residence, ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclRedOpDestroy)(int op, ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclGroupStart)(void);
typedef ncclResult_t (*PFN_ncclGroupEnd)(void);
typedef ncclResult_t (*PFN_ncclCommAbort)(ncclComm_t comm);
typedef ncclResult_t (*PFN_ncclCommDestroy)(ncclComm_t comm);
typedef const char *_Nonnull (*PFN_ncclGetErrorString)(ncclResult_t result);
typedef ncclResult_t (*PFN_ncclCommGetAsyncError)(ncclComm_t comm, ncclResult_t *asyncError);
typedef ncclResult_t (*PFN_ncclCommCount)(ncclComm_t comm, int *count);
typedef ncclResult_t (*PFN_ncclCommUserRank)(ncclComm_t comm, int *rank);

typedef struct CCUDANCCL {
    void *_Nullable library;   // NULL when loading failed
    PFN_ncclGetUniqueId ncclGetUniqueId;
    PFN_ncclCommInitRank ncclCommInitRank;
    PFN_ncclCommInitAll ncclCommInitAll;
    PFN_ncclCommSplit ncclCommSplit;
    PFN_ncclAllReduce ncclAllReduce;
    PFN_ncclAllGather ncclAllGather;
    PFN_ncclReduceScatter ncclReduceScatter;
    PFN_ncclBroadcast ncclBroadcast;
    PFN_ncclSend ncclSend;
    PFN_ncclRecv ncclRecv;
    PFN_ncclRedOpCreatePreMulSum ncclRedOpCreatePreMulSum;
    PFN_ncclRedOpDestroy ncclRedOpDestroy;
    PFN_ncclGroupStart ncclGroupStart;
    PFN_ncclGroupEnd ncclGroupEnd;
    PFN_ncclCommAbort ncclCommAbort;
    PFN_ncclCommDestroy ncclCommDestroy;
    PFN_ncclGetErrorString ncclGetErrorString;
    PFN_ncclCommGetAsyncError ncclCommGetAsyncError;
    PFN_ncclCommCount ncclCommCount;
    PFN_ncclCommUserRank ncclCommUserRank;
} CCUDANCCL;

// MARK: - cuDNN (backend API only)

// Only the handle and the generic backend-descriptor entry points are declared: the graph (tensors,
// operations, engine configs, plans, variant packs) is built by setting attributes whose enum values
// MegatronCUDA spells itself (CuDNNBackendEnums.swift, checked against cuDNN's headers by
// scripts/fixtures/cudnn_enums.sh). cuDNN's enums are C enums, passed here as int.
typedef int cudnnStatus_t;             // CUDNN_STATUS_SUCCESS == 0
typedef struct cudnnContext *cudnnHandle_t;
typedef void *cudnnBackendDescriptor_t;

typedef size_t (*PFN_cudnnGetVersion)(void);
typedef const char *_Nonnull (*PFN_cudnnGetErrorString)(cudnnStatus_t status);
typedef void (*PFN_cudnnGetLastErrorString)(char *message, size_t maxSize);
typedef cudnnStatus_t (*PFN_cudnnCreate)(cudnnHandle_t _Nullable *_Nonnull handle);
typedef cudnnStatus_t (*PFN_cudnnDestroy)(cudnnHandle_t handle);
typedef cudnnStatus_t (*PFN_cudnnSetStream)(cudnnHandle_t handle, CUstream stream);
typedef cudnnStatus_t (*PFN_cudnnBackendCreateDescriptor)(int descriptorType,
    cudnnBackendDescriptor_t _Nullable *_Nonnull descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendDestroyDescriptor)(cudnnBackendDescriptor_t descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendFinalize)(cudnnBackendDescriptor_t descriptor);
typedef cudnnStatus_t (*PFN_cudnnBackendSetAttribute)(cudnnBackendDescriptor_t descriptor, int attributeName,
    int attributeType, int64_t elementCount, const void *elements);
typedef cudnnStatus_t (*PFN_cudnnBackendGetAttribute)(cudnnBackendDescriptor_t descriptor, int attributeName,
    int attributeType, int64_t requestedElementCount, int64_t *elementCount, void *_Nullable elements);
typedef cudnnStatus_t (*PFN_cudnnBackendExecute)(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
    cudnnBackendDescriptor_t variantPack);

typedef struct CCUDACuDNN {
    void *_Nullable library;   // NULL when loading failed
    PFN_cudnnGetVersion cudnnGetVersion;
    PFN_cudnnGetErrorString cudnnGetErrorString;
    PFN_cudnnGetLastErrorString _Nullable cudnnGetLastErrorString;   // optional: only words error messages
    PFN_cudnnCreate cudnnCreate;
    PFN_cudnnDestroy cudnnDestroy;
    PFN_cudnnSetStream cudnnSetStream;
    PFN_cudnnBackendCreateDescriptor cudnnBackendCreateDescriptor;
    PFN_cudnnBackendDestroyDescriptor cudnnBackendDestroyDescriptor;
    PFN_cudnnBackendFinalize cudnnBackendFinalize;
    PFN_cudnnBackendSetAttribute cudnnBackendSetAttribute;
    PFN_cudnnBackendGetAttribute cudnnBackendGetAttribute;
    PFN_cudnnBackendExecute cudnnBackendExecute;
} CCUDACuDNN;

// MARK: - Loader

/// Opens the first of the library's sonames that dlopen finds and resolves every entry point.
/// On failure the returned table's `library` is NULL (its other fields must not be used) and
/// `error` holds a message naming the library or the missing symbol and what to install.
CCUDADriver ccuda_load_driver(char *error, size_t errorBytes);
CCUDANVRTC ccuda_load_nvrtc(char *error, size_t errorBytes);
CCUDACublasLt ccuda_load_cublaslt(char *error, size_t errorBytes);
CCUDANCCL ccuda_load_nccl(char *error, size_t errorBytes);
/// `path`, when not NULL, is the only file tried (MEGATRON_CUDNN_PATH); otherwise libcudnn.so.9, then libcudnn.so.
CCUDACuDNN ccuda_load_cudnn(const char *_Nullable path, char *error, size_t errorBytes);

#pragma clang assume_nonnull end

#ifdef __cplusplus
}
#endif

#endif
