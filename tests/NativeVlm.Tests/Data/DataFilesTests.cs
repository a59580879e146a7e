using NativeVlm.Data;
using Xunit;

namespace NativeVlm.Tests.Data;

/// <summary>Which files make up which split, by datasets' default data-file patterns.</summary>
public class DataFilesTests
{
    /// <summary>Creates empty files at <paramref name="relativePaths"/> and returns the splits found, paths relative again.</summary>
    private static Dictionary<string, string[]> FindSplits(params string[] relativePaths)
    {
        using var dir = new TempDirectory();
        foreach (string path in relativePaths)
        {
            string full = dir.Path(path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, []);
        }
        return DataFiles.FindSplits(dir.Root).ToDictionary(
            pair => pair.Key,
            pair => pair.Value.Select(path => Path.GetRelativePath(dir.Root, path).Replace(Path.DirectorySeparatorChar, '/')).ToArray());
    }

    [Fact]
    public void Sharded_files_under_data_name_their_splits_train_validation_test_first()
    {
        Dictionary<string, string[]> splits = FindSplits(
            "data/train-00001-of-00002.parquet",
            "data/zeta-00000-of-00001.parquet",
            "data/test-00000-of-00001-ab12.parquet",
            "data/train-00000-of-00002.parquet",
            "data/alpha.beta-00000-of-00001.parquet",
            "README.md");

        Assert.Equal(["train", "test", "alpha.beta", "zeta"], splits.Keys);
        Assert.Equal(["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"], splits["train"]);
        Assert.Equal(["data/test-00000-of-00001-ab12.parquet"], splits["test"]);
    }

    [Fact]
    public void A_sharded_file_whose_split_name_is_not_a_word_is_an_error()
    {
        var e = Assert.Throws<DatasetException>(() => FindSplits("data/my-split-00000-of-00001.parquet"));

        Assert.Contains("split name 'my-split' does not match", e.Message);
    }

    [Fact]
    public void A_config_folder_of_the_cauldron_is_the_split_train_by_its_file_names()
    {
        Dictionary<string, string[]> splits = FindSplits(
            "ai2d/train-00001-of-00002-8920de0b90993f78.parquet",
            "ai2d/train-00000-of-00002-0496147841e1c23a.parquet");

        Assert.Equal(["ai2d/train-00000-of-00002-0496147841e1c23a.parquet", "ai2d/train-00001-of-00002-8920de0b90993f78.parquet"], splits["train"]);
        Assert.Single(splits);
    }

    [Fact]
    public void Folders_named_for_a_split_keyword_come_before_file_names()
    {
        Dictionary<string, string[]> splits = FindSplits(
            "train/b.parquet",
            "train/a.parquet",
            "valid/test_c.parquet",
            "my-eval/d.parquet",
            "other/test.parquet");

        Assert.Equal(["train", "validation", "test"], splits.Keys);
        Assert.Equal(["train/a.parquet", "train/b.parquet"], splits["train"]);
        Assert.Equal(["valid/test_c.parquet"], splits["validation"]);
        Assert.Equal(["my-eval/d.parquet"], splits["test"]);
    }

    [Fact]
    public void File_names_with_a_split_keyword_between_separators_name_the_split()
    {
        Dictionary<string, string[]> splits = FindSplits(
            "my_train.parquet",
            "training-2.parquet",
            "trainset.parquet",
            "dev.parquet",
            "x.test.1.parquet");

        Assert.Equal(["train", "validation", "test"], splits.Keys);
        // Pattern by pattern: train[sep]*, then *[sep]train[sep]*, then training[sep]*; "trainset" has no separator.
        Assert.Equal(["my_train.parquet", "training-2.parquet"], splits["train"]);
        Assert.Equal(["dev.parquet"], splits["validation"]);
        Assert.Equal(["x.test.1.parquet"], splits["test"]);
    }

    [Fact]
    public void Without_keywords_every_file_is_train_in_code_point_order()
    {
        // U+FF21 sorts before U+1F600 by code point (Python), after it by UTF-16 unit (.NET's ordinal).
        Dictionary<string, string[]> splits = FindSplits("b/2.parquet", "a-\U0001F600.parquet", "a-\uFF21.parquet", "B.parquet", "a.parquet");

        Assert.Equal(["B.parquet", "a-\uFF21.parquet", "a-\U0001F600.parquet", "a.parquet", "b/2.parquet"], Assert.Single(splits).Value);
    }

    [Fact]
    public void Hidden_and_double_underscore_folders_and_other_extensions_are_ignored()
    {
        Dictionary<string, string[]> splits = FindSplits(
            "a.parquet",
            ".cache/train-00000-of-00001.parquet",
            "data/.train-00000-of-00001.parquet",
            "__pycache__/test.parquet",
            "notes.json",
            "b.parquet.bak");

        Assert.Equal(["a.parquet"], splits["train"]);
        Assert.Single(splits);
    }

    [Fact]
    public void A_folder_without_parquet_files_is_an_error_naming_it()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Path("README.md"), "");

        var e = Assert.Throws<DatasetException>(() => DataFiles.FindSplits(dir.Root));

        Assert.Equal($"{dir.Root}: no .parquet file in this folder or below it", e.Message);
    }
}
