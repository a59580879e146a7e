using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Training;
using NativeVlm.Vision;

namespace NativeVlm.Stitching;

/// <summary>What <see cref="ModelStitcher.Stitch"/> wrote.</summary>
/// <param name="VisionTensors">model.vision_model.* tensors copied byte for byte from the vision source.</param>
/// <param name="TextTensors">Tensors of the Qwen3 snapshot copied byte for byte (model.X as model.text_model.X, an untied lm_head.weight as itself).</param>
/// <param name="ConnectorBound">The connector's weights are drawn from U(−bound, bound).</param>
/// <param name="Files">The files of the output folder, by name.</param>
public sealed record StitchReport(int VisionTensors, int TextTensors, double ConnectorBound, StitchedSnapshotIds Ids, IReadOnlyList<string> Files);

/// <summary>
/// The Qwen3-SmVL recipe as one step on Hugging Face snapshots: the vision tower of an Idefics3 /
/// SmolVLM(2) snapshot, a new connector (vision hidden · scale_factor² → Qwen3 hidden, no bias), and a
/// Qwen3ForCausalLM's decoder, LM head and tokenizer, written as an Idefics3ForConditionalGeneration
/// snapshot that transformers and <see cref="Idefics3Model"/> load. Qwen3's reserved
/// &lt;|image_pad|&gt; is the image token, &lt;|vision_start|&gt; surrounds each tile and
/// &lt;|vision_pad|&gt; marks the global image (tokenizer_config.json's extra_special_tokens, which
/// SmolVLMProcessor reads). Unlike the recipe's code, every copy of image_token_id, vocab_size and the
/// eos/bos ids is set from Qwen3, config.json is written whole with text_config = Qwen3's config and an
/// explicit tie_word_embeddings (save_pretrained's diff form drops a true one, and transformers then
/// reads false and leaves the LM head random), and the result is checked by
/// <see cref="StitchedSnapshotCheck"/> before it is reported.
/// </summary>
public static class ModelStitcher
{
    public const string ImagePadToken = "<|image_pad|>", VisionStartToken = "<|vision_start|>", VisionPadToken = "<|vision_pad|>";

    public const string VisionPrefix = "model.vision_model.", TextPrefix = "model.text_model.", Qwen3Prefix = "model.";

    /// <summary>The processor's template file, and the one transformers and ChatTemplate.Load prefer to it.</summary>
    private const string ChatTemplateFileName = "chat_template.json", ChatTemplateJinjaFileName = "chat_template.jinja";

    private static readonly string[] VisionModelTypes = ["idefics3", "smolvlm"];

    /// <summary>transformers' save_pretrained: indent 2, keys sorted; non-ASCII and '&lt;' kept as they are, as Python's json.dumps(ensure_ascii=False) writes them.</summary>
    private static readonly JsonSerializerOptions HfJson = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <param name="visionSource">An Idefics3 or SmolVLM snapshot folder (config.json, safetensors, preprocessor_config.json).</param>
    /// <param name="textSource">A Qwen3ForCausalLM snapshot folder (config.json, safetensors, tokenizer.json, tokenizer_config.json).</param>
    /// <param name="output">Created if missing; must be empty unless <paramref name="force"/>.</param>
    /// <param name="seed">Seeds the connector's draw (xoshiro256**; torch's generator is not reproduced).</param>
    public static StitchReport Stitch(string visionSource, string textSource, string output, ulong seed, bool force)
    {
        VisionSource vision = VisionSource.Read(visionSource);
        TextSource text = TextSource.Read(textSource);
        CheckOutput(output, force, visionSource, textSource);
        Directory.CreateDirectory(output);
        // Left by an earlier snapshot under --force, these would shadow what is written here: readers look
        // for shards before model.safetensors, and prefer chat_template.jinja to chat_template.json.
        File.Delete(Path.Combine(output, SafeTensorsReader.IndexFileName));
        File.Delete(Path.Combine(output, ChatTemplateJinjaFileName));

        int connectorIn = vision.Vision.HiddenSize * vision.ScaleFactor * vision.ScaleFactor;
        double bound = 1.0 / Math.Sqrt(connectorIn);
        (int visionCount, int textCount) = WriteWeights(vision, text, Path.Combine(output, SafeTensorsReader.SingleFileName),
            Connector(text.Text.HiddenSize, connectorIn, bound, seed));

        int imageTokenId = text.Tokenizer.TokenToId(ImagePadToken)!.Value;
        WriteJson(Path.Combine(output, Idefics3Config.FileName), StitchedConfig(vision, text, imageTokenId));
        WriteJson(Path.Combine(output, StitchedSnapshotCheck.GenerationConfigFileName), GenerationConfig(vision, text));
        File.Copy(Path.Combine(text.Folder, ByteLevelBpeTokenizer.FileName), Path.Combine(output, ByteLevelBpeTokenizer.FileName), overwrite: true);
        string template = StitchedChatTemplate.For(ImagePadToken);
        WriteJson(Path.Combine(output, VlmProcessor.TokenizerConfigFileName), TokenizerConfig(text, template));
        WriteJson(Path.Combine(output, ChatTemplateFileName), new JsonObject { ["chat_template"] = template });
        foreach (string file in new[] { Idefics3ImageProcessorConfig.FileName, Idefics3Prompt.FileName })
        {
            string source = Path.Combine(vision.Folder, file);
            if (File.Exists(source))
            {
                File.Copy(source, Path.Combine(output, file), overwrite: true);
            }
        }

        StitchedSnapshotIds ids = StitchedSnapshotCheck.Run(output);
        IReadOnlyList<string> files = Directory.EnumerateFiles(output).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        return new StitchReport(visionCount, textCount, bound, ids, files);
    }

    private static void CheckOutput(string output, bool force, params string[] sources)
    {
        string full = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        if (sources.Any(source => Path.GetFullPath(source).TrimEnd(Path.DirectorySeparatorChar) == full))
        {
            throw new ArgumentException($"the output folder {output} is a source snapshot; write the stitched model elsewhere");
        }
        if (!force && Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
        {
            throw new ArgumentException($"the output folder {output} is not empty (--force writes into it)");
        }
    }

    /// <summary>torch.nn.Linear's default init, kaiming_uniform_(a=√5) = U(−1/√in, 1/√in), as [out, in] row-major.</summary>
    private static float[] Connector(int outFeatures, int inFeatures, double bound, ulong seed)
    {
        var random = new Xoshiro256(seed);
        var weight = new float[outFeatures * inFeatures];
        for (int i = 0; i < weight.Length; i++)
        {
            weight[i] = (float)((2 * random.NextDouble() - 1) * bound);
        }
        return weight;
    }

    /// <summary>
    /// model.safetensors in Idefics3's state-dict order: vision tower, connector, text model, LM head
    /// (untied only). Copied tensors keep their dtype and bytes; the connector is f32.
    /// </summary>
    private static (int Vision, int Text) WriteWeights(VisionSource vision, TextSource text, string path, float[] connector)
    {
        var writer = new SafeTensorsWriter();
        int visionCount = 0, textCount = 0;
        using (SafeTensorsReader source = SafeTensorsReader.Open(vision.Folder))
        {
            foreach (string name in source.Names.Where(n => n.StartsWith(VisionPrefix, StringComparison.Ordinal)))
            {
                SafeTensorInfo info = source.GetInfo(name);
                writer.AddRaw(name, info.DType, info.Shape, source.GetBytes(name));
                visionCount++;
            }
        }
        writer.Add(StitchedSnapshotCheck.ConnectorName, connector, text.Text.HiddenSize, connector.Length / text.Text.HiddenSize);
        using (SafeTensorsReader source = SafeTensorsReader.Open(text.Folder))
        {
            foreach (string name in source.Names.Where(n => n.StartsWith(Qwen3Prefix, StringComparison.Ordinal)))
            {
                SafeTensorInfo info = source.GetInfo(name);
                writer.AddRaw(TextPrefix + name[Qwen3Prefix.Length..], info.DType, info.Shape, source.GetBytes(name));
                textCount++;
            }
            if (!text.Text.TieWordEmbeddings)
            {
                SafeTensorInfo info = source.GetInfo(StitchedSnapshotCheck.LmHeadName);
                writer.AddRaw(StitchedSnapshotCheck.LmHeadName, info.DType, info.Shape, source.GetBytes(StitchedSnapshotCheck.LmHeadName));
                textCount++;
            }
        }
        writer.Save(path);
        return (visionCount, textCount);
    }

    /// <summary>
    /// The vision source's config with Qwen3's as text_config and every id, size and tie flag set from
    /// Qwen3 (the fixture's steps 6–13): image_token_id, vocab_size (top level and text_config),
    /// tie_word_embeddings (top level and text_config, explicit), the top-level bos/eos/pad ids where
    /// the source states them; vision_config as the source's, as an Idefics3 vision config.
    /// </summary>
    private static JsonObject StitchedConfig(VisionSource vision, TextSource text, int imageTokenId)
    {
        JsonObject config = vision.Config.DeepClone().AsObject();
        config.Remove("_name_or_path");
        config["architectures"] = new JsonArray("Idefics3ForConditionalGeneration");
        config["model_type"] = "idefics3";
        config["image_token_id"] = imageTokenId;
        config["scale_factor"] = vision.ScaleFactor;
        config["tie_word_embeddings"] = text.Text.TieWordEmbeddings;
        config["vocab_size"] = text.Text.VocabSize;

        JsonObject textConfig = text.Config.DeepClone().AsObject();
        textConfig.Remove("transformers_version");
        textConfig["vocab_size"] = text.Text.VocabSize;
        textConfig["tie_word_embeddings"] = text.Text.TieWordEmbeddings;
        config["text_config"] = textConfig;
        foreach (string id in new[] { "bos_token_id", "eos_token_id", "pad_token_id" }.Where(config.ContainsKey))
        {
            config[id] = textConfig[id]?.DeepClone();
        }

        // SmolVLM's vision config is the same SigLIP encoder under the name smolvlm_vision.
        config["vision_config"]!["model_type"] = "idefics3";
        return config;
    }

    /// <summary>
    /// Qwen3's generation_config.json (its bos, eos and pad ids: the SmolVLM ones are stale in the Qwen3
    /// vocabulary), or, when the Qwen3 snapshot has none, the vision source's with Qwen3's config ids.
    /// </summary>
    private static JsonObject GenerationConfig(VisionSource vision, TextSource text)
    {
        if (text.GenerationConfig is { } qwen3)
        {
            return qwen3.DeepClone().AsObject();
        }
        JsonObject generation = vision.GenerationConfig?.DeepClone().AsObject() ?? new JsonObject { ["_from_model_config"] = true };
        foreach (string id in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
        {
            generation.Remove(id);
            if (text.Config[id] is { } value)
            {
                generation[id] = value.DeepClone();
            }
        }
        return generation;
    }

    /// <summary>Qwen3's tokenizer_config.json with the image tokens named for the processor and the stitched chat template.</summary>
    private static JsonObject TokenizerConfig(TextSource text, string template)
    {
        JsonObject config = text.TokenizerConfig.DeepClone().AsObject();
        JsonObject extra = config[ImageTokens.ExtraSpecialTokensKey] as JsonObject ?? new JsonObject();
        extra[ImageTokens.ImageKey] = ImagePadToken;
        extra[ImageTokens.FakeAroundImageKey] = VisionStartToken;
        extra[ImageTokens.GlobalKey] = VisionPadToken;
        config[ImageTokens.ExtraSpecialTokensKey] = extra;
        config["chat_template"] = template;
        return config;
    }

    private static void WriteJson(string path, JsonObject json) =>
        File.WriteAllText(path, SortedKeys(json)!.ToJsonString(HfJson) + "\n");

    /// <summary>A copy with every object's keys in ordinal order (json.dumps(sort_keys=True)).</summary>
    private static JsonNode? SortedKeys(JsonNode? node) => node switch
    {
        JsonObject obj => new JsonObject(obj.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, SortedKeys(p.Value)))),
        JsonArray array => new JsonArray(array.Select(SortedKeys).ToArray()),
        _ => node?.DeepClone(),
    };

    internal static JsonObject ReadObject(string path)
    {
        using JsonDocument document = StitchedSnapshotCheck.ReadJson(path);
        return document.RootElement.ValueKind == JsonValueKind.Object
            ? JsonObject.Create(document.RootElement.Clone())!
            : throw new ConfigException(path, "", $"{path}: the file holds a JSON {document.RootElement.ValueKind}, not an object");
    }

    /// <summary>The vision side: an Idefics3 or SmolVLM snapshot with a vision tower and an image processor.</summary>
    private sealed record VisionSource(string Folder, JsonObject Config, JsonObject? GenerationConfig, VisionConfig Vision, int ScaleFactor)
    {
        public static VisionSource Read(string folder)
        {
            RequireFolder(folder, "--vision");
            string configPath = Path.Combine(folder, Idefics3Config.FileName);
            JsonObject config = ReadObject(configPath);
            using JsonDocument document = JsonDocument.Parse(config.ToJsonString());
            ConfigJson root = ConfigJson.Root(configPath, document.RootElement);
            string modelType = root.String("model_type", "");
            if (!VisionModelTypes.Contains(modelType))
            {
                throw root.Unsupported("model_type", ConfigJson.Format(modelType),
                    $"{string.Join(" or ", VisionModelTypes)}: the vision tower comes from an Idefics3ForConditionalGeneration or SmolVLMForConditionalGeneration snapshot");
            }
            if (!root.Section("vision_config").Exists)
            {
                throw new ConfigException(configPath, "vision_config", $"{configPath}: no vision_config: the vision tower's shape must be stated");
            }
            VisionConfig vision = VisionConfig.Parse(root.Section("vision_config"));
            int scaleFactor = root.PositiveInt("scale_factor", 2);
            string preprocessor = Path.Combine(folder, Idefics3ImageProcessorConfig.FileName);
            Idefics3ImageProcessorConfig.Load(preprocessor);
            using (SafeTensorsReader weights = SafeTensorsReader.Open(folder))
            {
                if (!weights.Names.Any(n => n.StartsWith(VisionPrefix, StringComparison.Ordinal)))
                {
                    throw new SafeTensorsException(weights.SourcePath, null, $"no {VisionPrefix}* tensor: the snapshot has no vision tower");
                }
            }
            string generationPath = Path.Combine(folder, StitchedSnapshotCheck.GenerationConfigFileName);
            return new VisionSource(folder, config, File.Exists(generationPath) ? ReadObject(generationPath) : null, vision, scaleFactor);
        }
    }

    /// <summary>The text side: a Qwen3ForCausalLM snapshot whose tokenizer has the reserved vision tokens.</summary>
    private sealed record TextSource(
        string Folder, JsonObject Config, JsonObject? GenerationConfig, JsonObject TokenizerConfig, TextConfig Text, ByteLevelBpeTokenizer Tokenizer)
    {
        public static TextSource Read(string folder)
        {
            RequireFolder(folder, "--text");
            string configPath = Path.Combine(folder, Idefics3Config.FileName);
            JsonObject config = ReadObject(configPath);
            using JsonDocument document = JsonDocument.Parse(config.ToJsonString());
            ConfigJson root = ConfigJson.Root(configPath, document.RootElement);
            string modelType = root.String("model_type", "");
            if (modelType != "qwen3")
            {
                throw root.Unsupported("model_type", ConfigJson.Format(modelType), "qwen3: the decoder comes from a Qwen3ForCausalLM snapshot");
            }
            TextConfig text = TextConfig.Parse(root, padWhenAbsent: null);

            string tokenizerPath = Path.Combine(folder, ByteLevelBpeTokenizer.FileName);
            if (!File.Exists(tokenizerPath))
            {
                throw new FileNotFoundException($"{tokenizerPath} not found: the stitched model takes Qwen3's tokenizer", tokenizerPath);
            }
            ByteLevelBpeTokenizer tokenizer = LoadTokenizer(tokenizerPath);
            foreach (string token in new[] { ImagePadToken, VisionStartToken, VisionPadToken })
            {
                if (tokenizer.TokenToId(token) is not int id)
                {
                    throw new ConfigException(tokenizerPath, "added_tokens",
                        $"{tokenizerPath}: has no {token} token; the stitched model uses Qwen3's reserved {ImagePadToken}, {VisionStartToken} and {VisionPadToken}");
                }
                if (id >= text.VocabSize)
                {
                    throw new ConfigException(tokenizerPath, "added_tokens",
                        $"{tokenizerPath}: {token} has the id {id}, outside {configPath}'s vocab_size {text.VocabSize}");
                }
            }
            string tokenizerConfigPath = Path.Combine(folder, VlmProcessor.TokenizerConfigFileName);
            JsonObject tokenizerConfig = ReadObject(tokenizerConfigPath);

            using (SafeTensorsReader weights = SafeTensorsReader.Open(folder))
            {
                string? stray = weights.Names.FirstOrDefault(n => !n.StartsWith(Qwen3Prefix, StringComparison.Ordinal) && n != StitchedSnapshotCheck.LmHeadName);
                if (stray != null)
                {
                    throw new SafeTensorsException(weights.SourcePath, stray, $"is not a tensor of a Qwen3ForCausalLM (model.* and {StitchedSnapshotCheck.LmHeadName})");
                }
                if (!text.TieWordEmbeddings && !weights.Contains(StitchedSnapshotCheck.LmHeadName))
                {
                    throw new SafeTensorsException(weights.SourcePath, StitchedSnapshotCheck.LmHeadName,
                        $"is missing, and {configPath} says tie_word_embeddings is false");
                }
            }
            string generationPath = Path.Combine(folder, StitchedSnapshotCheck.GenerationConfigFileName);
            return new TextSource(folder, config, File.Exists(generationPath) ? ReadObject(generationPath) : null, tokenizerConfig, text, tokenizer);
        }
    }

    /// <summary>The tokenizer, its faults reported as a config error of the file (the host reports those in one line).</summary>
    internal static ByteLevelBpeTokenizer LoadTokenizer(string path)
    {
        try
        {
            return ByteLevelBpeTokenizer.Load(path);
        }
        catch (TokenizerException e)
        {
            throw new ConfigException(e.FilePath, e.JsonPath, e.Message);
        }
    }

    private static void RequireFolder(string folder, string option)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"{folder} ({option}): no such snapshot folder");
        }
    }
}
