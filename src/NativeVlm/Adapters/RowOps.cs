using NativeVlm.Tensors;

namespace NativeVlm.Adapters;

/// <summary>
/// A per-row product that DoRA needs and the op set has no kernel for, composed from the batched
/// matmul with one output row per batch entry (batch = rows, a 1×1 by 1×k product each), so it
/// records its backward like any op. A native twin would be cheaper: a row scale
/// (y[j, :] = s[j]·m[j, :], ds[j] = Σₖ dy[j, k]·m[j, k]). DoRA's row norm is Ops.DoraNorm.
/// </summary>
internal static class RowOps
{
    /// <summary>m [rows, k], s [rows] → [rows, k] with row j multiplied by s[j]; differentiable in both.</summary>
    public static Tensor ScaleRows(Tensor m, Tensor s)
    {
        if (m.Rank != 2 || s.Rank != 1 || s.Dim(0) != m.Dim(0))
        {
            throw new ArgumentException($"scale_rows: m must be [rows, k] and s [rows], got {m} and {s}");
        }
        long rows = m.Dim(0), k = m.Dim(1);
        return Ops.Matmul(s.Reshape(rows, 1, 1), m.Reshape(rows, 1, k)).Reshape(rows, k);
    }
}
