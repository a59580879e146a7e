using NativeVlm.Tensors;

namespace NativeVlm.Adapters;

/// <summary>
/// Per-row products that DoRA needs and the op set has no kernel for, composed from the batched
/// matmul with one output row per batch entry (batch = rows, a 1×1 by 1×k product each), so they
/// record their backward like any op. Native twins would be cheaper: a row scale
/// (y[j, :] = s[j]·m[j, :], ds[j] = Σₖ dy[j, k]·m[j, k]) and a row norm.
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

    /// <summary>m [rows, k] → Σₖ m[j, k]² [rows].</summary>
    public static Tensor SquaredRowNorms(Tensor m)
    {
        if (m.Rank != 2)
        {
            throw new ArgumentException($"squared_row_norms: m must be [rows, k], got {m}");
        }
        long rows = m.Dim(0), k = m.Dim(1);
        Tensor rowsAsBatch = m.Reshape(rows, 1, k);
        return Ops.Matmul(rowsAsBatch, rowsAsBatch, transB: true).Reshape(rows);
    }
}
