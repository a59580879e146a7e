namespace NativeVlm.IO;

/// <summary>
/// The names a loader expected against the names a file holds: <see cref="Missing"/> in the
/// expected order, <see cref="Unexpected"/> in the file's order.
/// </summary>
public sealed record TensorNameCheck(IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected)
{
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0;

    public static TensorNameCheck Compare(IEnumerable<string> loaded, IEnumerable<string> expected)
    {
        List<string> loadedNames = loaded.ToList(), expectedNames = expected.ToList();
        var loadedSet = new HashSet<string>(loadedNames, StringComparer.Ordinal);
        var expectedSet = new HashSet<string>(expectedNames, StringComparer.Ordinal);
        return new TensorNameCheck(
            expectedNames.Where(name => !loadedSet.Contains(name)).Distinct().ToArray(),
            loadedNames.Where(name => !expectedSet.Contains(name)).Distinct().ToArray());
    }

    /// <summary>Every name, listed: "2 expected tensors are missing: a, b; 1 tensor is not expected: c".</summary>
    public override string ToString()
    {
        if (IsExact)
        {
            return "the tensors are exactly the expected ones";
        }
        var parts = new List<string>();
        if (Missing.Count > 0)
        {
            parts.Add($"{Missing.Count} expected {Plural(Missing.Count, "tensor is", "tensors are")} missing: {string.Join(", ", Missing)}");
        }
        if (Unexpected.Count > 0)
        {
            parts.Add($"{Unexpected.Count} {Plural(Unexpected.Count, "tensor is", "tensors are")} not expected: {string.Join(", ", Unexpected)}");
        }
        return string.Join("; ", parts);
    }

    private static string Plural(int count, string one, string many) => count == 1 ? one : many;
}
