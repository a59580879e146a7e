using System.Text;
using System.Text.RegularExpressions;

namespace NativeVlm.Data;

/// <summary>
/// Which parquet files of a folder (a Hugging Face dataset snapshot, or one of its config folders)
/// make up which split, by the default data-file patterns of datasets (<c>get_data_patterns</c>), the
/// first rule that finds a file deciding:
/// <list type="number">
/// <item>sharded files <c>data/{split}-00000-of-00002*.*</c>: each name before the shard number is a split;</item>
/// <item>a folder named for a split keyword (<c>train/</c>, <c>x-test/</c>, <c>valid_2/</c>);</item>
/// <item>a file named for a split keyword (<c>train-00000-of-00012-abc.parquet</c>, <c>my_test.parquet</c>);</item>
/// <item>otherwise every file is in "train".</item>
/// </list>
/// Hidden files and folders (leading '.') and folders with a leading "__" are ignored, as datasets
/// ignores them. Within a split, files come in the order of their paths' code points (Python's sort),
/// pattern by pattern in datasets' order; a file that two patterns match is read once. Configs
/// declared in a README are not read: point at the config's folder instead.
/// </summary>
public static partial class DataFiles
{
    public const string ParquetExtension = ".parquet";

    /// <summary>datasets' SPLIT_KEYWORDS, in its order of splits.</summary>
    private static readonly (string Split, string[] Keywords)[] SplitKeywords =
    [
        ("train", ["train", "training"]),
        ("validation", ["validation", "valid", "dev", "val"]),
        ("test", ["test", "testing", "eval", "evaluation"]),
    ];

    /// <summary>The parquet files under <paramref name="directory"/> by split name, each list in reading order.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="DatasetException">The folder holds no parquet file, or a sharded file's split name is not a valid one.</exception>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> FindSplits(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"dataset folder {directory} does not exist");
        }
        string root = Path.GetFullPath(directory);
        List<string> relativePaths = Directory.EnumerateFiles(root, "*" + ParquetExtension, SearchOption.AllDirectories)
            .Select(path => Path.GetRelativePath(root, path).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(path => path.EndsWith(ParquetExtension, StringComparison.Ordinal) && !IsIgnored(path))
            .ToList();
        if (relativePaths.Count == 0)
        {
            throw new DatasetException(root, null, $"no {ParquetExtension} file in this folder or below it");
        }

        Dictionary<string, List<string>> splits = FindShardedSplits(root, relativePaths)
            ?? FindKeywordSplits(relativePaths, keywordPatterns: FolderKeywordPatterns)
            ?? FindKeywordSplits(relativePaths, keywordPatterns: FileKeywordPatterns)
            ?? new Dictionary<string, List<string>> { ["train"] = SortByCodePoint(relativePaths) };
        return splits.ToDictionary(
            pair => pair.Key,
            pair => (IReadOnlyList<string>)pair.Value.Select(path => Path.Combine(root, path)).ToList());
    }

    /// <summary>Rule 1: <c>data/{split}-NNNNN-of-NNNNN*.*</c>, any split name; train, validation, test first.</summary>
    private static Dictionary<string, List<string>>? FindShardedSplits(string root, List<string> relativePaths)
    {
        var bySplit = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (string path in relativePaths)
        {
            Match match = ShardedFile().Match(path);
            if (match.Success)
            {
                string split = match.Groups["split"].Value;
                if (!SplitName().IsMatch(split))
                {
                    throw new DatasetException(Path.Combine(root, path), null, $"split name '{split}' does not match {SplitName()}");
                }
                bySplit.TryAdd(split, []);
                bySplit[split].Add(path);
            }
        }
        if (bySplit.Count == 0)
        {
            return null;
        }
        IEnumerable<string> defaultSplits = SplitKeywords.Select(entry => entry.Split).Where(bySplit.ContainsKey);
        IEnumerable<string> otherSplits = SortByCodePoint(bySplit.Keys.Except(defaultSplits));
        return defaultSplits.Concat(otherSplits).ToDictionary(split => split, split => SortByCodePoint(bySplit[split]));
    }

    /// <summary>Rules 2 and 3: every split that some keyword pattern matches, or null when none matches.</summary>
    private static Dictionary<string, List<string>>? FindKeywordSplits(List<string> relativePaths, Func<string, Regex[]> keywordPatterns)
    {
        var splits = new Dictionary<string, List<string>>();
        foreach ((string split, string[] keywords) in SplitKeywords)
        {
            var files = new List<string>();
            foreach (Regex pattern in keywords.SelectMany(keywordPatterns))
            {
                files.AddRange(SortByCodePoint(relativePaths.Where(path => pattern.IsMatch(path)).Except(files)));
            }
            if (files.Count > 0)
            {
                splits[split] = files;
            }
        }
        return splits.Count > 0 ? splits : null;
    }

    // NON_WORDS_CHARS "-._ 0-9" separates a keyword from the rest of a name.
    private const string Separator = "[-._ 0-9]";

    /// <summary><c>**/{k}/**</c>, <c>**/{k}[sep]*/**</c>, <c>**/*[sep]{k}/**</c>, <c>**/*[sep]{k}[sep]*/**</c>.</summary>
    private static Regex[] FolderKeywordPatterns(string keyword) =>
    [
        new($"^(.*/)?{keyword}/"),
        new($"^(.*/)?{keyword}{Separator}[^/]*/"),
        new($"^(.*/)?[^/]*{Separator}{keyword}/"),
        new($"^(.*/)?[^/]*{Separator}{keyword}{Separator}[^/]*/"),
    ];

    /// <summary><c>**/{k}[sep]*</c>, <c>**/*[sep]{k}[sep]*</c>: the file name itself.</summary>
    private static Regex[] FileKeywordPatterns(string keyword) =>
    [
        new($"^(.*/)?{keyword}{Separator}[^/]*$"),
        new($"^(.*/)?[^/]*{Separator}{keyword}{Separator}[^/]*$"),
    ];

    private static bool IsIgnored(string relativePath)
    {
        string[] parts = relativePath.Split('/');
        return parts.Any(part => part.StartsWith('.')) || parts[..^1].Any(part => part.StartsWith("__", StringComparison.Ordinal));
    }

    /// <summary>Python sorts strings by code point, which is the order of their UTF-8 bytes (not of UTF-16 units).</summary>
    private static List<string> SortByCodePoint(IEnumerable<string> paths) =>
        paths.OrderBy(path => Encoding.UTF8.GetBytes(path), Utf8Order.Instance).ToList();

    private sealed class Utf8Order : IComparer<byte[]>
    {
        public static readonly Utf8Order Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }

    [GeneratedRegex("^data/(?<split>[^/]+)-[0-9]{5}-of-[0-9]{5}[^/]*\\.[^/]*$")]
    private static partial Regex ShardedFile();

    /// <summary>datasets' <c>_split_re</c>.</summary>
    [GeneratedRegex(@"^\w+(\.\w+)*$")]
    private static partial Regex SplitName();
}
