using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// x with row index[i] replaced by src row i (nvlm_index_copy_forward; torch's
    /// <c>x.index_copy(0, index, src)</c>), how image features replace the embeddings of the image
    /// tokens: x [rows, d], src [nSrc, d], index int32 [nSrc] of distinct rows → [rows, d].
    /// An index out of range or repeated is an <see cref="NvlmException"/> naming its position.
    /// </summary>
    public static Tensor IndexCopy(Tensor x, Tensor src, Tensor index)
    {
        const string op = "index_copy";
        RequireDType(op, "x", x, DType.F32);
        RequireDType(op, "src", src, DType.F32);
        RequireDType(op, "index", index, DType.I32);
        RequireSameContext(op, x, src, index);
        if (x.Rank != 2)
        {
            throw new ArgumentException($"{op}: x must be [rows, d], got {x}");
        }
        long rows = x.Dim(0), d = x.Dim(1);
        if (src.Rank != 2 || src.Dim(1) != d)
        {
            throw new ArgumentException($"{op}: src must be [nSrc, {d}] for x {x}, got {src}");
        }
        long nSrc = src.Dim(0);
        RequireShape(op, "index", index, nSrc);

        Tensor y = Tensor.Empty(x.Context, DType.F32, rows, d);
        Native.Check(NativeMethods.nvlm_index_copy_forward(x.Context.Handle, y.Buffer, x.Buffer, src.Buffer,
            index.Buffer, rows, nSrc, d));
        if (ShouldRecord(x, src))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_index_copy_backward(x.Context.Handle, GradBuffer(x),
                GradBuffer(src), dy.Buffer, index.Buffer, rows, nSrc, d)), saved: [index]);
        }
        return y;
    }
}
