using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>Rows of table [vocab, d] gathered at ids (int32, any shape) → [..ids, d] (nvlm_embedding_forward).</summary>
    public static Tensor Embedding(Tensor table, Tensor ids)
    {
        const string op = "embedding";
        RequireDType(op, "table", table, DType.F32);
        RequireDType(op, "ids", ids, DType.I32);
        RequireSameContext(op, table, ids);
        if (table.Rank != 2)
        {
            throw new ArgumentException($"{op}: table must be [vocab, d], got {table}");
        }
        long n = ids.ElementCount, vocab = table.Dim(0), d = table.Dim(1);

        Tensor y = Tensor.Empty(table.Context, DType.F32, [.. ids.Shape, d]);
        Native.Check(NativeMethods.nvlm_embedding_forward(table.Context.Handle, y.Buffer, table.Buffer, ids.Buffer, n, vocab, d));

        if (ShouldRecord(table))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_embedding_backward(table.Context.Handle,
                GradBuffer(table), dy.Buffer, ids.Buffer, n, vocab, d)), saved: [ids]);
        }
        return y;
    }
}
