namespace NativeVlm.Tests;

/// <summary>
/// Where the golden fixtures are: <c>$NVLM_FIXTURES</c> when it is set (a root of the same layout,
/// possibly with other shapes and values), else the copies in the repository's tests/fixtures.
/// Tests that read them carry <c>[Trait("Category", Fixtures.Category)]</c> and take every shape
/// from the files.
/// </summary>
public static class Fixtures
{
    public const string Category = "Fixtures";

    public const string RootVariable = "NVLM_FIXTURES";

    private static readonly Lazy<string> LazyRoot = new(FindRoot);

    public static string Root => LazyRoot.Value;

    /// <summary>A path under the root: <c>Fixtures.Path("tiny-idefics3", "model.safetensors")</c>.</summary>
    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        string? fromEnvironment = Environment.GetEnvironmentVariable(RootVariable);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            return Directory.Exists(fromEnvironment)
                ? fromEnvironment
                : throw new DirectoryNotFoundException($"{RootVariable}={fromEnvironment} is not a directory");
        }
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, "tests", "fixtures");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException($"tests/fixtures not found above {AppContext.BaseDirectory}; set {RootVariable}");
    }
}
