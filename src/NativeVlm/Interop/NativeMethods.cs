using System.Reflection;
using System.Runtime.InteropServices;

namespace NativeVlm.Interop;

/// <summary>
/// Raw bindings to nvlm.h, one per export, named as in C so that a grep finds both sides.
/// Every call returns a status; <see cref="Native.Check"/> turns a failure into an
/// <see cref="NvlmException"/>. Optional buffers are passed as <see cref="BufferHandle.Null"/>.
/// </summary>
internal static partial class NativeMethods
{
    internal const string Library = "nvlm";

    static NativeMethods() => NativeLibrary.SetDllImportResolver(typeof(NativeMethods).Assembly, NativeLibraryLocator.Resolve);

    [LibraryImport(Library)] internal static partial int nvlm_abi_version();
    [LibraryImport(Library)] internal static partial IntPtr nvlm_last_error();
    [LibraryImport(Library)] internal static partial int nvlm_device_count(int kind, out int count);

    [LibraryImport(Library)] internal static partial int nvlm_context_create(int kind, int deviceIndex, out ContextHandle ctx);
    [LibraryImport(Library)] internal static partial int nvlm_context_destroy(IntPtr ctx);
    [LibraryImport(Library)] internal static partial int nvlm_context_synchronize(ContextHandle ctx);
    [LibraryImport(Library)] internal static partial int nvlm_context_memory_stats(ContextHandle ctx, out MemoryStats stats);
    [LibraryImport(Library)] internal static partial int nvlm_context_reset_peak(ContextHandle ctx);
    [LibraryImport(Library)] internal static partial int nvlm_context_set_math_mode(ContextHandle ctx, int mode);
    [LibraryImport(Library)] internal static partial int nvlm_context_math_mode(ContextHandle ctx, out int mode);
    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)] internal static partial int nvlm_range_push(ContextHandle ctx, string name);
    [LibraryImport(Library)] internal static partial int nvlm_range_pop(ContextHandle ctx);

    [LibraryImport(Library)] internal static partial int nvlm_buffer_alloc(ContextHandle ctx, long nbytes, out BufferHandle buf);
    [LibraryImport(Library)] internal static partial int nvlm_buffer_free(IntPtr buf);
    [LibraryImport(Library)] internal static unsafe partial int nvlm_buffer_upload(BufferHandle dst, long offset, void* src, long nbytes);
    [LibraryImport(Library)] internal static unsafe partial int nvlm_buffer_download(BufferHandle src, long offset, void* dst, long nbytes);
    [LibraryImport(Library)] internal static partial int nvlm_buffer_copy(BufferHandle dst, long dstOffset, BufferHandle src, long srcOffset, long nbytes);
    [LibraryImport(Library)] internal static partial int nvlm_buffer_zero(BufferHandle buf);

    [LibraryImport(Library)]
    internal static partial int nvlm_matmul(ContextHandle ctx, BufferHandle c, BufferHandle a, BufferHandle b,
        long batch, long m, long n, long k, int transA, int transB, float alpha, float beta);

    [LibraryImport(Library)]
    internal static partial int nvlm_linear_forward(ContextHandle ctx, BufferHandle output, BufferHandle x, BufferHandle w,
        BufferHandle bias, long m, long k, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_linear_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dw, BufferHandle dbias,
        BufferHandle dout, BufferHandle x, BufferHandle w, long m, long k, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_embedding_forward(ContextHandle ctx, BufferHandle output, BufferHandle table,
        BufferHandle ids, long n, long vocab, long d);
    [LibraryImport(Library)]
    internal static partial int nvlm_embedding_backward(ContextHandle ctx, BufferHandle dtable, BufferHandle dout,
        BufferHandle ids, long n, long vocab, long d);

    [LibraryImport(Library)]
    internal static partial int nvlm_index_copy_forward(ContextHandle ctx, BufferHandle output, BufferHandle x,
        BufferHandle src, BufferHandle index, long nRows, long nSrc, long d);
    [LibraryImport(Library)]
    internal static partial int nvlm_index_copy_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dsrc,
        BufferHandle dout, BufferHandle index, long nRows, long nSrc, long d);

    [LibraryImport(Library)]
    internal static partial int nvlm_rmsnorm_forward(ContextHandle ctx, BufferHandle output, BufferHandle rstd,
        BufferHandle x, BufferHandle w, long n, long d, float eps);
    [LibraryImport(Library)]
    internal static partial int nvlm_rmsnorm_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dw,
        BufferHandle dout, BufferHandle x, BufferHandle w, BufferHandle rstd, long n, long d);

    [LibraryImport(Library)]
    internal static partial int nvlm_layernorm_forward(ContextHandle ctx, BufferHandle output, BufferHandle mean,
        BufferHandle rstd, BufferHandle x, BufferHandle w, BufferHandle b, long n, long d, float eps);
    [LibraryImport(Library)]
    internal static partial int nvlm_layernorm_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dw,
        BufferHandle db, BufferHandle dout, BufferHandle x, BufferHandle w, BufferHandle mean, BufferHandle rstd,
        long n, long d);

    [LibraryImport(Library)]
    internal static partial int nvlm_rope_forward(ContextHandle ctx, BufferHandle output, BufferHandle x,
        BufferHandle pos, BufferHandle invFreq, long nTokens, long nHeads, long headDim);
    [LibraryImport(Library)]
    internal static partial int nvlm_rope_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout,
        BufferHandle pos, BufferHandle invFreq, long nTokens, long nHeads, long headDim);

    [LibraryImport(Library)]
    internal static partial int nvlm_attention_forward(ContextHandle ctx, BufferHandle output, BufferHandle lse,
        BufferHandle q, BufferHandle k, BufferHandle v, BufferHandle keyMask, long batch, long tq, long tk,
        long nHeads, long nKvHeads, long headDim, int causal, float scale);
    [LibraryImport(Library)]
    internal static partial int nvlm_attention_backward(ContextHandle ctx, BufferHandle dq, BufferHandle dk,
        BufferHandle dv, BufferHandle dout, BufferHandle q, BufferHandle k, BufferHandle v, BufferHandle keyMask,
        BufferHandle output, BufferHandle lse, long batch, long tq, long tk, long nHeads, long nKvHeads,
        long headDim, int causal, float scale);

    [LibraryImport(Library)]
    internal static partial int nvlm_gelu_forward(ContextHandle ctx, BufferHandle output, BufferHandle x, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_gelu_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout, BufferHandle x, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_swiglu_forward(ContextHandle ctx, BufferHandle output, BufferHandle gate,
        BufferHandle up, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_swiglu_backward(ContextHandle ctx, BufferHandle dgate, BufferHandle dup,
        BufferHandle dout, BufferHandle gate, BufferHandle up, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_residual_forward(ContextHandle ctx, BufferHandle output, BufferHandle a,
        BufferHandle b, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_residual_backward(ContextHandle ctx, BufferHandle da, BufferHandle db,
        BufferHandle dout, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_bias_add_forward(ContextHandle ctx, BufferHandle output, BufferHandle x,
        BufferHandle bias, long m, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_bias_add_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dbias,
        BufferHandle dout, long m, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_scale_forward(ContextHandle ctx, BufferHandle output, BufferHandle x, float alpha, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_scale_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout, float alpha, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_sum_forward(ContextHandle ctx, BufferHandle output, BufferHandle x, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_sum_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_patchify_forward(ContextHandle ctx, BufferHandle output, BufferHandle pixels,
        long n, long channels, long height, long width, long patch);
    [LibraryImport(Library)]
    internal static partial int nvlm_patchify_backward(ContextHandle ctx, BufferHandle dpixels, BufferHandle dout,
        long n, long channels, long height, long width, long patch);

    [LibraryImport(Library)]
    internal static partial int nvlm_pixel_shuffle_forward(ContextHandle ctx, BufferHandle output, BufferHandle x,
        long n, long seq, long d, long scale);
    [LibraryImport(Library)]
    internal static partial int nvlm_pixel_shuffle_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout,
        long n, long seq, long d, long scale);

    [LibraryImport(Library)]
    internal static partial int nvlm_lm_logprob_forward(ContextHandle ctx, BufferHandle logp, BufferHandle lse,
        BufferHandle h, BufferHandle w, BufferHandle targets, long n, long d, long vocab, long chunk);
    [LibraryImport(Library)]
    internal static partial int nvlm_lm_logprob_backward(ContextHandle ctx, BufferHandle dh, BufferHandle dw,
        BufferHandle dlogp, BufferHandle h, BufferHandle w, BufferHandle targets, BufferHandle lse, long n, long d,
        long vocab, long chunk);

    [LibraryImport(Library)]
    internal static partial int nvlm_adamw_step(ContextHandle ctx, BufferHandle param, BufferHandle grad,
        BufferHandle m, BufferHandle v, long n, float lr, float beta1, float beta2, float eps, float weightDecay,
        long step);
    /// <summary>params, grads, m, v: arrays of count nvlm_buffer* (referenced by the caller for the call).</summary>
    [LibraryImport(Library)]
    internal static partial int nvlm_adamw_multi_tensor_step(ContextHandle ctx, IntPtr[] parameters, IntPtr[] grads,
        IntPtr[] m, IntPtr[] v, long[] n, long count, float lr, float beta1, float beta2, float eps, float weightDecay,
        long step);

    [LibraryImport(Library)]
    internal static partial int nvlm_cast(ContextHandle ctx, BufferHandle dst, int dstDtype, BufferHandle src,
        int srcDtype, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_nf4_quantize(ContextHandle ctx, BufferHandle packed, BufferHandle absmaxQ,
        BufferHandle absmax2, BufferHandle offset, BufferHandle absmaxCode, BufferHandle absmax, BufferHandle w, long n,
        long k);
    [LibraryImport(Library)]
    internal static partial int nvlm_nf4_dequantize(ContextHandle ctx, BufferHandle w, BufferHandle packed,
        BufferHandle absmaxQ, BufferHandle absmax2, BufferHandle offset, BufferHandle absmaxCode, long n, long k);
    [LibraryImport(Library)]
    internal static partial int nvlm_nf4_linear_forward(ContextHandle ctx, BufferHandle output, BufferHandle x,
        BufferHandle packed, BufferHandle absmaxQ, BufferHandle absmax2, BufferHandle offset, BufferHandle absmaxCode,
        long m, long k, long n);
    [LibraryImport(Library)]
    internal static partial int nvlm_nf4_linear_backward(ContextHandle ctx, BufferHandle dx, BufferHandle dout,
        BufferHandle packed, BufferHandle absmaxQ, BufferHandle absmax2, BufferHandle offset, BufferHandle absmaxCode,
        long m, long k, long n);

    [LibraryImport(Library)]
    internal static partial int nvlm_lora_forward(ContextHandle ctx, BufferHandle output, BufferHandle down,
        BufferHandle baseOut, BufferHandle baseDora, BufferHandle xLora, BufferHandle a, BufferHandle b,
        BufferHandle colScale, long m, long k, long n, long r, float scaling);
    [LibraryImport(Library)]
    internal static partial int nvlm_lora_backward(ContextHandle ctx, BufferHandle dbaseOut, BufferHandle dbaseDora,
        BufferHandle dxLora, BufferHandle da, BufferHandle db, BufferHandle dcolScale, BufferHandle dout,
        BufferHandle baseDora, BufferHandle xLora, BufferHandle a, BufferHandle b, BufferHandle colScale,
        BufferHandle down, long m, long k, long n, long r, float scaling);

    [LibraryImport(Library)]
    internal static partial int nvlm_dora_norm(ContextHandle ctx, BufferHandle norm, BufferHandle invNorm,
        BufferHandle w, BufferHandle a, BufferHandle b, long n, long k, long r, float scaling);
    [LibraryImport(Library)]
    internal static partial int nvlm_dora_norm_nf4(ContextHandle ctx, BufferHandle norm, BufferHandle invNorm,
        BufferHandle packed, BufferHandle absmaxQ, BufferHandle absmax2, BufferHandle offset, BufferHandle absmaxCode,
        BufferHandle a, BufferHandle b, long n, long k, long r, float scaling);
}

/// <summary>nvlm_memory_stats.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct MemoryStats
{
    public long LiveBytes;
    public long PeakBytes;
    public long CachedBytes;
}

/// <summary>Status checking and the ABI handshake.</summary>
internal static class Native
{
    /// <summary>The NVLM_ABI_VERSION this assembly was written against.</summary>
    internal const int AbiVersion = 7;

    private static readonly Lazy<int> LoadedAbi = new(NativeMethods.nvlm_abi_version);

    /// <summary>Throws unless the loaded library speaks the ABI version these bindings expect.</summary>
    internal static void EnsureCompatible()
    {
        if (LoadedAbi.Value != AbiVersion)
        {
            throw new NvlmException(NvlmStatus.Unavailable,
                $"{NativeLibraryLocator.LoadedPath} has ABI version {LoadedAbi.Value}, this build of NativeVlm needs " +
                $"{AbiVersion}: rebuild the native library with ./build.sh native");
        }
    }

    internal static void Check(int status)
    {
        if (status != 0)
        {
            string message = Marshal.PtrToStringUTF8(NativeMethods.nvlm_last_error()) ?? "";
            throw new NvlmException((NvlmStatus)status, message.Length > 0 ? message : $"native status {status}");
        }
    }
}

/// <summary>Finds libnvlm: NVLM_NATIVE_LIB, then next to the assembly, then build/native above it.</summary>
internal static class NativeLibraryLocator
{
    internal static string? LoadedPath { get; private set; }

    private static string FileName =>
        OperatingSystem.IsWindows() ? "nvlm.dll" : OperatingSystem.IsMacOS() ? "libnvlm.dylib" : "libnvlm.so";

    internal static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != NativeMethods.Library)
        {
            return IntPtr.Zero;
        }

        List<string> candidates = [];
        string? fromEnvironment = Environment.GetEnvironmentVariable("NVLM_NATIVE_LIB");
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            candidates.Add(fromEnvironment);
        }
        candidates.Add(Path.Combine(AppContext.BaseDirectory, FileName));
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            candidates.Add(Path.Combine(dir.FullName, "build", "native", FileName));
        }

        foreach (string path in candidates)
        {
            if (File.Exists(path))
            {
                LoadedPath = path;
                return NativeLibrary.Load(path);
            }
        }
        throw new DllNotFoundException(
            $"{FileName} not found (looked at NVLM_NATIVE_LIB, {AppContext.BaseDirectory} and build/native/ in its " +
            "parents). Build it with ./build.sh native, or set NVLM_NATIVE_LIB to its path.");
    }
}
