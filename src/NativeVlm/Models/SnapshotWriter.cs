using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Nn;

namespace NativeVlm.Models;

/// <summary>
/// Writes a model as a full Hugging Face snapshot that transformers' from_pretrained loads: the
/// source snapshot's config.json and its other non-weight files (tokenizer, processor, chat
/// template, generation config), and one model.safetensors in f32 holding every tensor of the
/// source's weights under the same name and in the same order. Linear weights come from the model
/// (merged, or dequantised when the base is NF4); every other tensor is unchanged by loading,
/// merging or quantising, so it is copied from the source, widened to f32.
/// </summary>
public static class SnapshotWriter
{
    /// <summary>Files besides config.json that a snapshot carries and that hold no weights; copied when present.</summary>
    private static readonly string[] CompanionFiles =
    [
        "generation_config.json", "preprocessor_config.json", "processor_config.json", "chat_template.json",
        "chat_template.jinja", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
    ];

    /// <summary>Config, tokenizer and processor files of <paramref name="snapshotDir"/>, as names relative to it.</summary>
    public static IReadOnlyList<string> CompanionFileNames(string snapshotDir) =>
        Directory.EnumerateFiles(snapshotDir)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(name => name == Idefics3Config.FileName || CompanionFiles.Contains(name)
                           || name.StartsWith("tokenizer", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>
    /// Writes <paramref name="model"/>, loaded from <paramref name="sourceSnapshotDir"/>, into
    /// <paramref name="outputDir"/> (created if missing; files of the same names are replaced).
    /// Holds the whole f32 file in memory before writing it (SafeTensorsWriter).
    /// </summary>
    public static void Save(Idefics3Model model, string sourceSnapshotDir, string outputDir)
    {
        if (Path.GetFullPath(sourceSnapshotDir).TrimEnd(Path.DirectorySeparatorChar) ==
            Path.GetFullPath(outputDir).TrimEnd(Path.DirectorySeparatorChar))
        {
            throw new ArgumentException($"the output folder {outputDir} is the source snapshot; write the merged model elsewhere");
        }
        Dictionary<string, Linear> linearsByWeight = model.Linears.ToDictionary(l => $"{l.Name}.weight");
        var writer = new SafeTensorsWriter();
        using (SafeTensorsReader source = SafeTensorsReader.Open(sourceSnapshotDir))
        {
            foreach (string name in source.Names)
            {
                if (linearsByWeight.TryGetValue(name, out Linear? linear))
                {
                    using var scope = new TensorScope();
                    writer.Add(name, linear.Weight.ToDense());
                }
                else
                {
                    writer.Add(name, source.ReadFloat32(name), source.GetInfo(name).Shape.ToArray());
                }
            }
        }
        Directory.CreateDirectory(outputDir);
        writer.Save(Path.Combine(outputDir, SafeTensorsReader.SingleFileName));
        // A shard index left in the folder would make readers (this one and transformers) look for
        // shards instead of the single file just written.
        File.Delete(Path.Combine(outputDir, SafeTensorsReader.IndexFileName));
        foreach (string file in CompanionFileNames(sourceSnapshotDir))
        {
            File.Copy(Path.Combine(sourceSnapshotDir, file), Path.Combine(outputDir, file), overwrite: true);
        }
    }
}
