using System.Text.Json;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Checks;

/// <summary>
/// Validation of a model's files against each other, one <see cref="Finding"/> per check: fields
/// transformers loads without complaint but that break or silently change a run (an image token id the
/// tokenizer does not give the image token, a stale nested copy of it, end-of-sequence ids the tokenizer
/// lacks, an image_seq_len the model does not produce), and weights that disagree with config.json.
/// Only headers and JSON are read, so this is cheap for a multi-GB snapshot.
/// </summary>
public static class SnapshotFindings
{
    public const string GenerationConfigFileName = "generation_config.json";

    /// <summary>Fields that name the image token in transformers' configs, at any depth of config.json.</summary>
    private static readonly string[] ImageTokenFields = ["image_token_id", "image_token_index"];

    /// <summary>What config.json says about itself (the path only names the file in the findings).</summary>
    public static IEnumerable<Finding> OfConfig(string configPath, Idefics3Config config)
    {
        string file = Path.GetFileName(configPath);
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        yield return config.ImageTokenId >= 0 && config.ImageTokenId < t.VocabSize
            ? Finding.Ok($"{file} image_token_id", $"{config.ImageTokenId} is inside the vocabulary (text_config.vocab_size {t.VocabSize})")
            : Finding.Error($"{file} image_token_id", $"{config.ImageTokenId} is outside the text vocabulary (text_config.vocab_size {t.VocabSize}): " +
                                                      "no input token can be an image token, so images never reach the decoder");
        foreach (Finding copy in NestedImageTokenIds(configPath, config.ImageTokenId))
        {
            yield return copy;
        }
        if (v.ImageSize % v.PatchSize != 0)
        {
            yield return Finding.Warning($"{file} vision_config.image_size",
                $"{v.ImageSize} is not a multiple of patch_size {v.PatchSize}: transformers truncates to {v.PatchesPerSide} patches " +
                $"per side and ignores the last {v.ImageSize % v.PatchSize} pixels of each row and column");
        }
        if (t.TieWordEmbeddings != config.TieWordEmbeddings)
        {
            yield return Finding.Warning($"{file} text_config.tie_word_embeddings",
                $"{ConfigJson.Format(t.TieWordEmbeddings)} but the top-level tie_word_embeddings is {ConfigJson.Format(config.TieWordEmbeddings)}; " +
                "transformers v4.46.3 follows the top-level field");
        }
        foreach ((string field, int? id) in new[] { ("pad_token_id", t.PadTokenId), ("bos_token_id", t.BosTokenId) }
                     .Concat(t.EosTokenIds.Select(id => ("eos_token_id", (int?)id))))
        {
            if (id is < 0 || id >= t.VocabSize)
            {
                yield return Finding.Error($"{file} text_config.{field}", $"{id} is outside the vocabulary (vocab_size {t.VocabSize})");
            }
        }
    }

    /// <summary>
    /// Every other image_token_id / image_token_index in config.json (text_config, vision_config, …) must
    /// equal the top-level one: a recipe that edits one copy and leaves another stale trains a model whose
    /// decoder never sees the image.
    /// </summary>
    private static IEnumerable<Finding> NestedImageTokenIds(string configPath, int imageTokenId)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(configPath));
        var copies = new List<(string Path, JsonElement Value)>();
        Collect(document.RootElement, "", copies);
        string file = Path.GetFileName(configPath);
        foreach ((string path, JsonElement value) in copies.Where(c => c.Path != "image_token_id"))
        {
            bool same = value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id == imageTokenId;
            yield return same
                ? Finding.Ok($"{file} {path}", $"agrees with the top-level image_token_id {imageTokenId}")
                : Finding.Error($"{file} {path}", $"{value.GetRawText()}, but the top-level image_token_id is {imageTokenId}: a stale copy");
        }
    }

    private static void Collect(JsonElement element, string path, List<(string, JsonElement)> copies)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            return;
        }
        foreach (JsonProperty property in element.EnumerateObject())
        {
            string propertyPath = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
            if (ImageTokenFields.Contains(property.Name) && property.Value.ValueKind != JsonValueKind.Null)
            {
                copies.Add((propertyPath, property.Value));
            }
            Collect(property.Value, propertyPath, copies);
        }
    }

    /// <summary>
    /// The snapshot's tensors against the ones the config implies, from the safetensors headers: names,
    /// shapes, and a tied LM head's leftover copy. One ok finding when all agree.
    /// </summary>
    public static IEnumerable<Finding> OfWeights(SafeTensorsReader reader, Idefics3Config config)
    {
        IReadOnlyList<ExpectedTensor> expected = SnapshotTensors.Of(config);
        string file = Path.GetFileName(reader.SourcePath);
        var findings = new List<Finding>();
        List<string> missing = expected.Where(t => !reader.Contains(t.Name)).Select(t => t.Name).ToList();
        List<string> misshapen = expected.Where(t => reader.Contains(t.Name) && !reader.GetInfo(t.Name).Shape.SequenceEqual(t.Shape))
            .Select(t => $"{t.Name} is [{string.Join(", ", reader.GetInfo(t.Name).Shape.ToArray())}], the config implies [{string.Join(", ", t.Shape)}]")
            .ToList();
        HashSet<string> expectedNames = expected.Select(t => t.Name).ToHashSet();
        List<string> unexpected = reader.Names.Where(n => !expectedNames.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (config.TieWordEmbeddings && unexpected.Remove(SnapshotTensors.LmHeadWeight))
        {
            findings.Add(Finding.Warning($"{file} {SnapshotTensors.LmHeadWeight}",
                "present although tie_word_embeddings is true: transformers ignores it and uses the token embeddings"));
        }
        if (missing.Count > 0)
        {
            findings.Add(Finding.Error(file, $"missing tensors ({missing.Count}): {string.Join(", ", missing)}"));
        }
        if (misshapen.Count > 0)
        {
            findings.Add(Finding.Error(file, $"shapes that disagree with config.json ({misshapen.Count}): {string.Join("; ", misshapen)}"));
        }
        if (unexpected.Count > 0)
        {
            findings.Add(Finding.Warning(file, $"unexpected tensors ({unexpected.Count}): {string.Join(", ", unexpected)}"));
        }
        if (findings.Count == 0)
        {
            string dtypes = string.Join(", ", reader.Names.GroupBy(n => reader.GetInfo(n).DType.HeaderName()).Select(g => $"{g.Key} ×{g.Count()}"));
            findings.Add(Finding.Ok(file, $"{reader.Names.Count} tensors ({dtypes}), every one as config.json implies " +
                                          $"(tie_word_embeddings {ConfigJson.Format(config.TieWordEmbeddings)}: " +
                                          $"{(config.TieWordEmbeddings ? "no" : "its own")} {SnapshotTensors.LmHeadWeight})"));
        }
        return findings;
    }

    /// <summary>
    /// The tokenizer, chat template, processor files and generation_config.json of a snapshot against
    /// config.json and each other. Files the snapshot does not have are not checked.
    /// </summary>
    public static IEnumerable<Finding> OfProcessor(SnapshotProcessor processor, Idefics3Config config)
    {
        var findings = new List<Finding>(processor.LoadFindings);
        TextConfig t = config.Text;
        if (processor.ProcessorImageSeqLen is int imageSeqLen)
        {
            string subject = $"{Idefics3Prompt.FileName} image_seq_len";
            string implied = $"(vision_config.image_size {config.Vision.ImageSize} / patch_size {config.Vision.PatchSize})² / scale_factor {config.ScaleFactor}² = {config.ImageSeqLen}";
            findings.Add(imageSeqLen == config.ImageSeqLen
                ? Finding.Ok(subject, $"{imageSeqLen} = {implied}")
                : Finding.Error(subject, $"{imageSeqLen}, but {implied}: the prompt would hold a different number of image tokens than the model gives features"));
        }
        if (processor.ImageProcessor?.Config is { } settings)
        {
            string subject = $"{Idefics3ImageProcessorConfig.FileName} max_image_size.longest_edge";
            findings.Add(settings.MaxImageSize == config.Vision.ImageSize
                ? Finding.Ok(subject, $"tiles of {settings.MaxImageSize} px, the vision tower's image_size")
                : Finding.Error(subject, $"tiles of {settings.MaxImageSize} px, but vision_config.image_size is {config.Vision.ImageSize}: each tile " +
                                         $"would give other than image_seq_len {config.ImageSeqLen} features"));
        }

        ByteLevelBpeTokenizer? tokenizer = processor.Tokenizer;
        if (tokenizer == null)
        {
            return findings;
        }
        ImageTokens tokens = processor.Prompt.Tokens;
        int? imageId = tokenizer.TokenToId(tokens.Image);
        findings.Add(imageId == config.ImageTokenId
            ? Finding.Ok("config.json image_token_id", $"{config.ImageTokenId} is the tokenizer's id of {tokens.Image}")
            : Finding.Error("config.json image_token_id", imageId is int id
                ? $"{config.ImageTokenId}, but the tokenizer gives {tokens.Image} the id {id}: the decoder would never see the image (a stale id)"
                : $"{config.ImageTokenId}, but the tokenizer has no {tokens.Image} token"));
        foreach (string token in new[] { tokens.FakeAroundImage, tokens.Global }.Where(token => tokenizer.TokenToId(token) == null))
        {
            findings.Add(Finding.Error(ByteLevelBpeTokenizer.FileName, $"has no {token} token, which the prompt expansion writes"));
        }

        int largestId = LargestTokenId(Path.Combine(processor.Directory, ByteLevelBpeTokenizer.FileName));
        findings.Add(largestId < t.VocabSize
            ? Finding.Ok("config.json text_config.vocab_size", $"{t.VocabSize} embedding rows hold every tokenizer id (largest {largestId})")
            : Finding.Error("config.json text_config.vocab_size", $"{t.VocabSize}, but the tokenizer gives ids up to {largestId}: those tokens index past the embeddings"));

        findings.AddRange(EosIds(t.EosTokenIds, "config.json text_config.eos_token_id", tokenizer, t.VocabSize));
        string generationConfig = Path.Combine(processor.Directory, GenerationConfigFileName);
        if (File.Exists(generationConfig))
        {
            try
            {
                using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(generationConfig));
                ConfigJson json = ConfigJson.Root(generationConfig, document.RootElement);
                findings.AddRange(EosIds(json.IntList("eos_token_id", []), $"{GenerationConfigFileName} eos_token_id", tokenizer, t.VocabSize));
            }
            catch (Exception e) when (e is JsonException or ConfigException)
            {
                findings.Add(Finding.Error(GenerationConfigFileName, e.Message));
            }
        }

        findings.Add(TemplateFinding(processor));
        return findings;
    }

    private static IEnumerable<Finding> EosIds(IReadOnlyList<int> ids, string subject, ByteLevelBpeTokenizer tokenizer, int vocabSize)
    {
        if (ids.Count == 0)
        {
            yield break;
        }
        List<int> unknown = ids.Where(id => id < 0 || id >= vocabSize || tokenizer.IdToToken(id) == null).ToList();
        yield return unknown.Count == 0
            ? Finding.Ok(subject, string.Join(", ", ids.Select(id => $"{id} ({tokenizer.IdToToken(id)})")))
            : Finding.Error(subject, $"{string.Join(", ", unknown)} not a token of the tokenizer (or past vocab_size {vocabSize}): generation would never stop on it");
    }

    private static Finding TemplateFinding(SnapshotProcessor processor)
    {
        const string subject = "chat template";
        if (processor.Template == null)
        {
            return Finding.Warning(subject, $"none in {string.Join(", ", ChatTemplate.FileNames)}: prompts must be formatted by hand");
        }
        string imageToken = processor.Prompt.Tokens.Image;
        try
        {
            string text = processor.Template.Render([ImageTokenCounts.UserTurn()], addGenerationPrompt: true);
            int images = text.Split(imageToken).Length - 1;
            return images == 1
                ? Finding.Ok(subject, $"{processor.Template.Name} renders a user turn with an image as one {imageToken}")
                : Finding.Error(subject, $"{processor.Template.Name} renders a user turn with an image with {images} {imageToken} tokens, not one: " +
                                         "the processor would not place the image");
        }
        catch (ChatTemplateException e)
        {
            return Finding.Error(subject, $"cannot render a user turn with an image: {e.Message}");
        }
    }

    /// <summary>The largest id of tokenizer.json's model.vocab and added_tokens: len(tokenizer) − 1 when the ids are dense.</summary>
    private static int LargestTokenId(string tokenizerPath)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(tokenizerPath));
        JsonElement root = document.RootElement;
        int largest = -1;
        if (root.TryGetProperty("model", out JsonElement model) && model.TryGetProperty("vocab", out JsonElement vocab) && vocab.ValueKind == JsonValueKind.Object)
        {
            largest = vocab.EnumerateObject().Select(entry => entry.Value.GetInt32()).DefaultIfEmpty(-1).Max();
        }
        if (root.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind == JsonValueKind.Array)
        {
            largest = Math.Max(largest, added.EnumerateArray().Select(token => token.GetProperty("id").GetInt32()).DefaultIfEmpty(-1).Max());
        }
        return largest;
    }

    /// <summary>
    /// An inputs file's image tokens against its frames: input_ids must hold config.json's image_token_id
    /// once per feature the model gives (real frames × image_seq_len) in every sample.
    /// </summary>
    public static Finding OfInputs(string inputsPath, Idefics3Inputs inputs, Idefics3Config config)
    {
        string subject = $"{Path.GetFileName(inputsPath)} input_ids";
        if (inputs.PixelShape is not { } shape)
        {
            return Finding.Warning(subject, "the file has no pixel_values: nothing to place at the image tokens");
        }
        // A real frame is one whose pixels are not all zero, as Idefics3Model's real_images_inds decides (padding slots are zeros).
        int slots = shape[1], frameSize = shape[2] * shape[3] * shape[4];
        for (int b = 0; b < inputs.Batch; b++)
        {
            int frames = Enumerable.Range(0, slots).Count(s => inputs.PixelValues!.AsSpan((b * slots + s) * frameSize, frameSize).ContainsAnyExcept(0f));
            int imageTokens = inputs.InputIds.AsSpan(b * inputs.SeqLen, inputs.SeqLen).Count(config.ImageTokenId);
            if (imageTokens != frames * config.ImageSeqLen)
            {
                return Finding.Error(subject, $"sample {b} holds {imageTokens} tokens of config.json's image_token_id {config.ImageTokenId}, but its " +
                                              $"{frames} frames give {frames * config.ImageSeqLen} features ({frames} × image_seq_len {config.ImageSeqLen}): " +
                                              "a stale image_token_id, or inputs of another tokenizer");
            }
        }
        return Finding.Ok(subject, $"every sample holds image_token_id {config.ImageTokenId} once per image feature");
    }
}
