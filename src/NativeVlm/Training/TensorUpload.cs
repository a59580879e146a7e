using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>Overwrites an existing f32 tensor's values in place (restoring a checkpoint into live parameters).</summary>
internal static class TensorUpload
{
    public static unsafe void Upload(Tensor tensor, float[] values)
    {
        if (tensor.DType != DType.F32 || values.Length != tensor.ElementCount)
        {
            throw new ArgumentException($"{values.Length} f32 values do not fill {tensor}");
        }
        fixed (float* src = values)
        {
            Native.Check(NativeMethods.nvlm_buffer_upload(tensor.Buffer, 0, src, tensor.ByteCount));
        }
    }
}
