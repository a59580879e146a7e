using NativeVlm.Interop;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>The C ABI seen from C#: version handshake, status → typed exception with the native message.</summary>
public class AbiTests
{
    [Fact]
    public void Loaded_library_speaks_the_bindings_abi_version()
    {
        Assert.Equal(Native.AbiVersion, NativeMethods.nvlm_abi_version());
    }

    [Fact]
    public void Native_argument_error_surfaces_as_NvlmException_naming_the_argument()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Tensor.FromArray(ctx, new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        using Tensor w = Tensor.FromArray(ctx, new float[] { 1, 1 }, 2); // one float short of d = 3
        using Tensor y = Tensor.Zeros(ctx, DType.F32, 2, 3);
        using Tensor rstd = Tensor.Zeros(ctx, DType.F32, 2);

        // Called below the C# op layer, so only the native validation can catch the short buffer.
        var e = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_rmsnorm_forward(
            ctx.Handle, y.Buffer, rstd.Buffer, x.Buffer, w.Buffer, 2, 3, 1e-5f)));

        Assert.Equal(NvlmStatus.InvalidArgument, e.Status);
        Assert.Contains("rmsnorm", e.Message);
        Assert.Contains("w", e.Message);
    }

    [Fact]
    public void Null_required_buffer_is_an_invalid_argument_not_a_crash()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor x = Tensor.FromArray(ctx, new float[] { 1, 2, 3 }, 3);

        var e = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_gelu_forward(
            ctx.Handle, BufferHandle.Null, x.Buffer, 3)));

        Assert.Equal(NvlmStatus.InvalidArgument, e.Status);
        Assert.Contains("gelu", e.Message);
    }

    [Fact]
    public void Out_of_range_token_id_names_its_position()
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Tensor table = Tensor.FromArray(ctx, new float[8], 4, 2);
        using Tensor ids = Tensor.FromArray(ctx, new[] { 0, 3, 7 }, 3);

        var e = Assert.Throws<NvlmException>(() => Ops.Embedding(table, ids));

        Assert.Equal(NvlmStatus.InvalidArgument, e.Status);
        Assert.Contains("2", e.Message); // the position
        Assert.Contains("7", e.Message); // the value
    }

    [Fact]
    public void Buffers_of_another_context_are_refused()
    {
        using Context first = Context.Create(DeviceKind.Cpu);
        using Context second = Context.Create(DeviceKind.Cpu);
        using Tensor x = Tensor.FromArray(first, new float[] { 1, 2 }, 2);
        using Tensor y = Tensor.Zeros(second, DType.F32, 2);

        var e = Assert.Throws<NvlmException>(() => Native.Check(NativeMethods.nvlm_gelu_forward(
            first.Handle, y.Buffer, x.Buffer, 2)));

        Assert.Equal(NvlmStatus.InvalidArgument, e.Status);
    }

    [SkippableFact]
    public void Cuda_context_without_a_gpu_is_unavailable_with_a_reason()
    {
        Skip.If(Backends.GpuPresent, "this machine has a GPU, where a CUDA context must open");

        var e = Assert.Throws<NvlmException>(() => Context.Create(DeviceKind.Cuda));

        Assert.Equal(NvlmStatus.Unavailable, e.Status);
        Assert.Matches("CUDA", e.Message);
        Assert.Equal(0, Context.DeviceCount(DeviceKind.Cuda));
    }

    [Fact]
    public void Bad_device_string_names_it()
    {
        var e = Assert.Throws<ArgumentException>(() => Context.Create("tpu:0"));
        Assert.Contains("tpu:0", e.Message);
    }
}
