using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>
    /// A LoRA / DoRA adapter path fused onto its base projection's output (nvlm_lora_forward):
    /// y = baseOut + (c − 1)⊙baseDora + c⊙scaling·(xLora·aᵀ)·bᵀ, c = colScale per output column.
    /// baseOut [..., n]; xLora [..., k] (the adapter's input after dropout), a [r, k], b [n, r];
    /// colScale [n] or null (c = 1: LoRA); baseDora [..., n] (DoRA's xLora·Wᵀ without bias, which
    /// may be baseOut itself) or null (0). → y [..., n]. The backward adds into every input's
    /// gradient; the (..., r) down projection is kept for it.
    /// </summary>
    public static Tensor Lora(Tensor baseOut, Tensor? baseDora, Tensor xLora, Tensor a, Tensor b, Tensor? colScale, float scaling)
    {
        const string op = "lora";
        RequireDType(op, "baseOut", baseOut, DType.F32);
        RequireDType(op, "xLora", xLora, DType.F32);
        RequireDType(op, "a", a, DType.F32);
        RequireDType(op, "b", b, DType.F32);
        RequireRank(op, "baseOut", baseOut, 1);
        RequireSameContext(op, baseOut, baseDora, xLora, a, b, colScale);
        if (a.Rank != 2 || a.Dim(1) != xLora.Dim(-1))
        {
            throw new ArgumentException($"{op}: a must be [r, {xLora.Dim(-1)}] for xLora {xLora}, got {a}");
        }
        long m = Rows(baseOut), k = a.Dim(1), n = baseOut.Dim(-1), r = a.Dim(0);
        RequireShape(op, "xLora", xLora, WithLast(baseOut, k));
        RequireShape(op, "b", b, n, r);
        if (baseDora != null)
        {
            RequireDType(op, "baseDora", baseDora, DType.F32);
            RequireShape(op, "baseDora", baseDora, baseOut.Shape.ToArray());
        }
        if (colScale != null)
        {
            RequireDType(op, "colScale", colScale, DType.F32);
            RequireShape(op, "colScale", colScale, n);
        }

        Tensor y = Tensor.Empty(baseOut.Context, DType.F32, baseOut.Shape.ToArray());
        Tensor down = Tensor.Empty(baseOut.Context, DType.F32, m, r); // (m, r) saved for backward
        Native.Check(NativeMethods.nvlm_lora_forward(baseOut.Context.Handle, y.Buffer, down.Buffer, baseOut.Buffer,
            BufferOrNull(baseDora), xLora.Buffer, a.Buffer, b.Buffer, BufferOrNull(colScale), m, k, n, r, scaling));

        if (ShouldRecord(baseOut, baseDora, xLora, a, b, colScale))
        {
            Record(op, y, dy => Native.Check(NativeMethods.nvlm_lora_backward(baseOut.Context.Handle,
                GradBuffer(baseOut), GradBuffer(baseDora), GradBuffer(xLora), GradBuffer(a), GradBuffer(b),
                GradBuffer(colScale), dy.Buffer, BufferOrNull(baseDora), xLora.Buffer, a.Buffer, b.Buffer,
                BufferOrNull(colScale), down.Buffer, m, k, n, r, scaling)), saved: [a, b, colScale, down], activations: [baseDora, xLora]);
        }
        else
        {
            down.Dispose();
        }
        return y;
    }
}
