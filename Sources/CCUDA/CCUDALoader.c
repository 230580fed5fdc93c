// dlopen-based loader for the CUDA driver, NVRTC, cuBLASLt, NCCL and cuDNN (see CCUDA.h).
#include "CCUDA.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

// Opens the first soname of `candidates` that dlopen finds. On failure, writes which names were
// tried, dlerror's reason for the first one, and what to install.
static void *open_first(const char *const *candidates, const char *install, char *error, size_t errorBytes) {
    char firstReason[256] = "";
    for (int i = 0; candidates[i] != NULL; i++) {
        void *library = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (library != NULL) return library;
        if (i == 0) {
            const char *reason = dlerror();
            snprintf(firstReason, sizeof firstReason, "%s", reason ? reason : "not found");
        }
    }
    char tried[256] = "";
    for (int i = 0; candidates[i] != NULL; i++) {
        if (i > 0) strncat(tried, ", ", sizeof tried - strlen(tried) - 1);
        strncat(tried, candidates[i], sizeof tried - strlen(tried) - 1);
    }
    snprintf(error, errorBytes, "cannot load %s (tried %s: %s). %s", candidates[0], tried, firstReason, install);
    return NULL;
}

// Resolves the first of `names` (NULL-terminated) that the library exports.
static int resolve(void *library, void **slot, const char *const *names, const char *libraryName,
                   char *error, size_t errorBytes) {
    for (int i = 0; names[i] != NULL; i++) {
        void *symbol = dlsym(library, names[i]);
        if (symbol != NULL) {
            *slot = symbol;
            return 0;
        }
    }
    snprintf(error, errorBytes, "%s does not export %s: the installed version is too old", libraryName, names[0]);
    return -1;
}

#define RESOLVE(table, field, ...) \
    do { \
        const char *const names_[] = {__VA_ARGS__, NULL}; \
        if (resolve((table)->library, (void **)&(table)->field, names_, libraryName, error, errorBytes) != 0) \
            goto fail; \
    } while (0)

static const char *const driverInstall =
    "Install the NVIDIA driver (it provides libcuda.so.1), or run on a machine with an NVIDIA GPU.";

static int load_driver(CCUDADriver *table, char *error, size_t errorBytes) {
    static const char *const candidates[] = {"libcuda.so.1", "libcuda.so", NULL};
    const char *libraryName = candidates[0];
    memset(table, 0, sizeof *table);
    table->library = open_first(candidates, driverInstall, error, errorBytes);
    if (table->library == NULL) return -1;
    RESOLVE(table, cuInit, "cuInit");
    RESOLVE(table, cuDriverGetVersion, "cuDriverGetVersion");
    RESOLVE(table, cuGetErrorName, "cuGetErrorName");
    RESOLVE(table, cuGetErrorString, "cuGetErrorString");
    RESOLVE(table, cuDeviceGetCount, "cuDeviceGetCount");
    RESOLVE(table, cuDeviceGet, "cuDeviceGet");
    RESOLVE(table, cuDeviceGetName, "cuDeviceGetName");
    RESOLVE(table, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    RESOLVE(table, cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    RESOLVE(table, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    RESOLVE(table, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
    RESOLVE(table, cuCtxSetCurrent, "cuCtxSetCurrent");
    RESOLVE(table, cuCtxSynchronize, "cuCtxSynchronize");
    RESOLVE(table, cuMemGetInfo, "cuMemGetInfo_v2");
    RESOLVE(table, cuMemAlloc, "cuMemAlloc_v2");
    RESOLVE(table, cuMemFree, "cuMemFree_v2");
    RESOLVE(table, cuMemAllocHost, "cuMemAllocHost_v2");
    RESOLVE(table, cuMemFreeHost, "cuMemFreeHost");
    RESOLVE(table, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    RESOLVE(table, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    RESOLVE(table, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    RESOLVE(table, cuMemsetD8Async, "cuMemsetD8Async");
    RESOLVE(table, cuStreamCreate, "cuStreamCreate");
    RESOLVE(table, cuStreamDestroy, "cuStreamDestroy_v2");
    RESOLVE(table, cuStreamSynchronize, "cuStreamSynchronize");
    RESOLVE(table, cuStreamWaitEvent, "cuStreamWaitEvent");
    RESOLVE(table, cuEventCreate, "cuEventCreate");
    RESOLVE(table, cuEventDestroy, "cuEventDestroy_v2");
    RESOLVE(table, cuEventRecord, "cuEventRecord");
    RESOLVE(table, cuEventQuery, "cuEventQuery");
    RESOLVE(table, cuEventSynchronize, "cuEventSynchronize");
    RESOLVE(table, cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime");
    RESOLVE(table, cuModuleLoadData, "cuModuleLoadData");
    RESOLVE(table, cuModuleUnload, "cuModuleUnload");
    RESOLVE(table, cuModuleGetFunction, "cuModuleGetFunction");
    RESOLVE(table, cuFuncSetAttribute, "cuFuncSetAttribute");
    RESOLVE(table, cuLaunchKernel, "cuLaunchKernel");
    return 0;
fail:
    dlclose(table->library);
    table->library = NULL;
    return -1;
}

static const char *const nvrtcInstall =
    "Install the CUDA runtime compiler (NVRTC: package cuda-nvrtc-13-0, or pip install nvidia-cuda-nvrtc) "
    "and make sure its lib directory is on LD_LIBRARY_PATH.";

static int load_nvrtc(CCUDANVRTC *table, char *error, size_t errorBytes) {
    static const char *const candidates[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", NULL};
    const char *libraryName = "libnvrtc";
    memset(table, 0, sizeof *table);
    table->library = open_first(candidates, nvrtcInstall, error, errorBytes);
    if (table->library == NULL) return -1;
    RESOLVE(table, nvrtcGetErrorString, "nvrtcGetErrorString");
    RESOLVE(table, nvrtcVersion, "nvrtcVersion");
    RESOLVE(table, nvrtcCreateProgram, "nvrtcCreateProgram");
    RESOLVE(table, nvrtcDestroyProgram, "nvrtcDestroyProgram");
    RESOLVE(table, nvrtcCompileProgram, "nvrtcCompileProgram");
    RESOLVE(table, nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    RESOLVE(table, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    RESOLVE(table, nvrtcGetPTXSize, "nvrtcGetPTXSize");
    RESOLVE(table, nvrtcGetPTX, "nvrtcGetPTX");
    RESOLVE(table, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    RESOLVE(table, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    return 0;
fail:
    dlclose(table->library);
    table->library = NULL;
    return -1;
}

static const char *const cublasLtInstall =
    "Install cuBLAS (package libcublas-13-0, or pip install nvidia-cublas) "
    "and make sure its lib directory is on LD_LIBRARY_PATH.";

static int load_cublaslt(CCUDACublasLt *table, char *error, size_t errorBytes) {
    static const char *const candidates[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", NULL};
    const char *libraryName = "libcublasLt";
    memset(table, 0, sizeof *table);
    table->library = open_first(candidates, cublasLtInstall, error, errorBytes);
    if (table->library == NULL) return -1;
    RESOLVE(table, cublasLtGetVersion, "cublasLtGetVersion");
    RESOLVE(table, cublasLtCreate, "cublasLtCreate");
    RESOLVE(table, cublasLtDestroy, "cublasLtDestroy");
    RESOLVE(table, cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate");
    RESOLVE(table, cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
    RESOLVE(table, cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
    RESOLVE(table, cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
    RESOLVE(table, cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
    RESOLVE(table, cublasLtMatrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute");
    RESOLVE(table, cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
    RESOLVE(table, cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
    RESOLVE(table, cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
    RESOLVE(table, cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
    RESOLVE(table, cublasLtMatmul, "cublasLtMatmul");
    // Optional: only used to word error messages.
    table->cublasLtGetStatusString = (PFN_cublasLtGetStatusString)dlsym(table->library, "cublasLtGetStatusString");
    return 0;
fail:
    dlclose(table->library);
    table->library = NULL;
    return -1;
}

static const char *const ncclInstall =
    "Install NCCL (package libnccl2, or pip install nvidia-nccl-cu12) "
    "and make sure its lib directory is on LD_LIBRARY_PATH.";

static int load_nccl(CCUDANCCL *table, char *error, size_t errorBytes) {
    static const char *const candidates[] = {"libnccl.so.2", "libnccl.so", NULL};
    const char *libraryName = candidates[0];
    memset(table, 0, sizeof *table);
    table->library = open_first(candidates, ncclInstall, error, errorBytes);
    if (table->library == NULL) return -1;
    RESOLVE(table, ncclGetUniqueId, "ncclGetUniqueId");
    RESOLVE(table, ncclCommInitRank, "ncclCommInitRank");
    RESOLVE(table, ncclCommInitAll, "ncclCommInitAll");
    RESOLVE(table, ncclCommSplit, "ncclCommSplit");
    RESOLVE(table, ncclAllReduce, "ncclAllReduce");
    RESOLVE(table, ncclAllGather, "ncclAllGather");
    RESOLVE(table, ncclReduceScatter, "ncclReduceScatter");
    RESOLVE(table, ncclBroadcast, "ncclBroadcast");
    RESOLVE(table, ncclSend, "ncclSend");
    RESOLVE(table, ncclRecv, "ncclRecv");
    RESOLVE(table, ncclRedOpCreatePreMulSum, "ncclRedOpCreatePreMulSum");
    RESOLVE(table, ncclRedOpDestroy, "ncclRedOpDestroy");
    RESOLVE(table, ncclGroupStart, "ncclGroupStart");
    RESOLVE(table, ncclGroupEnd, "ncclGroupEnd");
    RESOLVE(table, ncclCommAbort, "ncclCommAbort");
    RESOLVE(table, ncclCommDestroy, "ncclCommDestroy");
    RESOLVE(table, ncclGetErrorString, "ncclGetErrorString");
    RESOLVE(table, ncclCommGetAsyncError, "ncclCommGetAsyncError");
    RESOLVE(table, ncclCommCount, "ncclCommCount");
    RESOLVE(table, ncclCommUserRank, "ncclCommUserRank");
    return 0;
fail:
    dlclose(table->library);
    table->library = NULL;
    return -1;
}

static const char *const cudnnInstall =
    "Install cuDNN 9 (package libcudnn9-cuda-12 and its lib directory on LD_LIBRARY_PATH, or pip install nvidia-cudnn-cu12, "
    "which PyTorch's wheels also bring and which is found under the usual Python prefixes), "
    "or set MEGATRON_CUDNN_PATH to the full path of libcudnn.so.9.";

static int load_cudnn(CCUDACuDNN *table, const char *path, char *error, size_t errorBytes) {
    static const char *const defaults[] = {"libcudnn.so.9", "libcudnn.so", NULL};
    const char *const explicitPath[] = {path, NULL};
    const char *const *candidates = path != NULL ? explicitPath : defaults;
    const char *libraryName = candidates[0];
    memset(table, 0, sizeof *table);
    table->library = open_first(candidates, cudnnInstall, error, errorBytes);
    if (table->library == NULL) return -1;
    RESOLVE(table, cudnnGetVersion, "cudnnGetVersion");
    RESOLVE(table, cudnnGetErrorString, "cudnnGetErrorString");
    RESOLVE(table, cudnnCreate, "cudnnCreate");
    RESOLVE(table, cudnnDestroy, "cudnnDestroy");
    RESOLVE(table, cudnnSetStream, "cudnnSetStream");
    RESOLVE(table, cudnnBackendCreateDescriptor, "cudnnBackendCreateDescriptor");
    RESOLVE(table, cudnnBackendDestroyDescriptor, "cudnnBackendDestroyDescriptor");
    RESOLVE(table, cudnnBackendFinalize, "cudnnBackendFinalize");
    RESOLVE(table, cudnnBackendSetAttribute, "cudnnBackendSetAttribute");
    RESOLVE(table, cudnnBackendGetAttribute, "cudnnBackendGetAttribute");
    RESOLVE(table, cudnnBackendExecute, "cudnnBackendExecute");
    // Optional (cuDNN 9.0+): only used to word error messages.
    table->cudnnGetLastErrorString = (PFN_cudnnGetLastErrorString)dlsym(table->library, "cudnnGetLastErrorString");
    return 0;
fail:
    dlclose(table->library);
    table->library = NULL;
    return -1;
}

CCUDADriver ccuda_load_driver(char *error, size_t errorBytes) {
    CCUDADriver table;
    if (load_driver(&table, error, errorBytes) != 0) memset(&table, 0, sizeof table);
    return table;
}

CCUDANVRTC ccuda_load_nvrtc(char *error, size_t errorBytes) {
    CCUDANVRTC table;
    if (load_nvrtc(&table, error, errorBytes) != 0) memset(&table, 0, sizeof table);
    return table;
}

CCUDACublasLt ccuda_load_cublaslt(char *error, size_t errorBytes) {
    CCUDACublasLt table;
    if (load_cublaslt(&table, error, errorBytes) != 0) memset(&table, 0, sizeof table);
    return table;
}

CCUDANCCL ccuda_load_nccl(char *error, size_t errorBytes) {
    CCUDANCCL table;
    if (load_nccl(&table, error, errorBytes) != 0) memset(&table, 0, sizeof table);
    return table;
}

CCUDACuDNN ccuda_load_cudnn(const char *path, char *error, size_t errorBytes) {
    CCUDACuDNN table;
    if (load_cudnn(&table, path, error, errorBytes) != 0) memset(&table, 0, sizeof table);
    return table;
}
