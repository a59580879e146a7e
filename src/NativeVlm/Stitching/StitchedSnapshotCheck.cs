using System.Text.Json;
using NativeVlm.Batches;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Stitching;

/// <summary>The ids a consistent snapshot agrees on, as <see cref="StitchedSnapshotCheck.Run"/> found them.</summary>
public sealed record StitchedSnapshotIds(
    string ImageToken, int ImageTokenId, string EosToken, int EosTokenId, int VocabSize, bool TiedLmHead, long[] ConnectorShape);

/// <summary>
/// Checks that the copies of one fact in a snapshot's files agree, the failures a hand-made stitch
/// falls into: every image_token_id in config.json (nested ones included) is the tokenizer's id of
/// the processor's image token (a stale one and the model trains blind: image features never replace
/// a token, the loss still falls on the text); every vocab_size equals the embedding rows and every
/// tokenizer id fits below it; every eos id (config.json, generation_config.json, tokenizer_config.json's
/// eos_token) is a token of the tokenizer; the top-level tie_word_embeddings agrees with the text
/// config's and with the presence of lm_head.weight; the connector maps vision hidden · scale² to text
/// hidden; and the processor side loads (<see cref="VlmProcessor.Load"/>). A failure is a
/// <see cref="ConfigException"/> naming the file and the field.
/// </summary>
public static class StitchedSnapshotCheck
{
    public const string GenerationConfigFileName = "generation_config.json";

    public const string EmbedTokensName = "model.text_model.embed_tokens.weight";

    public const string LmHeadName = "lm_head.weight";

    public const string ConnectorName = "model.connector.modality_projection.proj.weight";

    public static StitchedSnapshotIds Run(string snapshot)
    {
        string configPath = Path.Combine(snapshot, Idefics3Config.FileName);
        string tokenizerPath = Path.Combine(snapshot, ByteLevelBpeTokenizer.FileName);
        string tokenizerConfigPath = Path.Combine(snapshot, VlmProcessor.TokenizerConfigFileName);
        string generationConfigPath = Path.Combine(snapshot, GenerationConfigFileName);
        Idefics3Config config = Idefics3Config.Load(configPath);
        ByteLevelBpeTokenizer tokenizer = ModelStitcher.LoadTokenizer(tokenizerPath);
        ImageTokens imageTokens = ImageTokens.Load(tokenizerConfigPath);

        CheckImageTokenId(configPath, tokenizerPath, tokenizer, imageTokens.Image);

        long[] embedShape, connectorShape;
        bool hasLmHead;
        string weightsPath;
        using (SafeTensorsReader weights = SafeTensorsReader.Open(snapshot))
        {
            weightsPath = weights.SourcePath;
            embedShape = weights.GetInfo(EmbedTokensName).Shape.ToArray();
            connectorShape = weights.GetInfo(ConnectorName).Shape.ToArray();
            hasLmHead = weights.Contains(LmHeadName);
        }
        int vocabSize = (int)embedShape[0];
        CheckVocabulary(configPath, tokenizerPath, vocabSize);
        CheckLmHead(configPath, weightsPath, config, hasLmHead);
        long[] expectedConnector = [config.Text.HiddenSize, config.ConnectorInputSize];
        if (!connectorShape.SequenceEqual(expectedConnector))
        {
            throw new ConfigException(configPath, "text_config.hidden_size",
                $"{weightsPath}: {ConnectorName} is [{string.Join(", ", connectorShape)}] but {configPath} implies " +
                $"[{string.Join(", ", expectedConnector)}] (text hidden_size, vision hidden_size · scale_factor²)");
        }

        (string eosToken, int eosTokenId) = CheckEos(configPath, generationConfigPath, tokenizerConfigPath, tokenizer, vocabSize);
        VlmProcessor.Load(snapshot);
        return new StitchedSnapshotIds(imageTokens.Image, config.ImageTokenId, eosToken, eosTokenId, vocabSize,
            config.TieWordEmbeddings, connectorShape);
    }

    /// <summary>Every image_token_id of config.json, nested ones included, is the tokenizer's id of the processor's image token.</summary>
    private static void CheckImageTokenId(string configPath, string tokenizerPath, ByteLevelBpeTokenizer tokenizer, string imageToken)
    {
        int imageTokenId = tokenizer.TokenToId(imageToken)
            ?? throw new ConfigException(tokenizerPath, "added_tokens", $"{tokenizerPath}: has no token {imageToken} (the processor's image token)");
        using JsonDocument configJson = ReadJson(configPath);
        foreach ((string path, JsonElement value) in Fields(configJson.RootElement, "image_token_id", ""))
        {
            if (!value.TryGetInt32Number(out int id) || id != imageTokenId)
            {
                throw new ConfigException(configPath, path,
                    $"{configPath}: {path} is {value.GetRawText()} but the tokenizer gives the image token {imageToken} the id {imageTokenId}: " +
                    "image features would never reach the decoder");
            }
        }
    }

    /// <summary>Every vocab_size of config.json equals the embedding rows, and the tokenizer's largest id is below them.</summary>
    private static void CheckVocabulary(string configPath, string tokenizerPath, int vocabSize)
    {
        using (JsonDocument configJson = ReadJson(configPath))
        {
            foreach ((string path, JsonElement value) in Fields(configJson.RootElement, "vocab_size", ""))
            {
                if (!value.TryGetInt32Number(out int size) || size != vocabSize)
                {
                    throw new ConfigException(configPath, path,
                        $"{configPath}: {path} is {value.GetRawText()} but {EmbedTokensName} has {vocabSize} rows");
                }
            }
        }
        (string token, int id) = LargestTokenId(tokenizerPath);
        if (id >= vocabSize)
        {
            throw new ConfigException(tokenizerPath, "added_tokens",
                $"{tokenizerPath}: token {token} has the id {id}, outside the {vocabSize} rows of {EmbedTokensName}");
        }
    }

    /// <summary>
    /// Tied: the top-level field (which transformers v4.46.3 reads) and text_config's say true, and the
    /// head is the embedding; untied: both say false and lm_head.weight is stored.
    /// </summary>
    private static void CheckLmHead(string configPath, string weightsPath, Idefics3Config config, bool hasLmHead)
    {
        if (config.TieWordEmbeddings != config.Text.TieWordEmbeddings)
        {
            throw new ConfigException(configPath, "tie_word_embeddings",
                $"{configPath}: tie_word_embeddings is {ConfigJson.Format(config.TieWordEmbeddings)} but text_config.tie_word_embeddings is " +
                $"{ConfigJson.Format(config.Text.TieWordEmbeddings)}: transformers reads the top-level one, so the LM head would not be the one the decoder was trained with");
        }
        if (!config.TieWordEmbeddings && !hasLmHead)
        {
            throw new ConfigException(configPath, "tie_word_embeddings",
                $"{configPath}: tie_word_embeddings is false but {weightsPath} has no {LmHeadName}: transformers would initialise the LM head at random");
        }
    }

    /// <summary>tokenizer_config.json's eos_token is a token, and every eos_token_id of config.json and generation_config.json is a token id below the vocabulary size.</summary>
    private static (string Token, int Id) CheckEos(
        string configPath, string generationConfigPath, string tokenizerConfigPath, ByteLevelBpeTokenizer tokenizer, int vocabSize)
    {
        string eosToken = SpecialToken(tokenizerConfigPath, "eos_token")
            ?? throw new ConfigException(tokenizerConfigPath, "eos_token", $"{tokenizerConfigPath}: no eos_token");
        int eosTokenId = tokenizer.TokenToId(eosToken)
            ?? throw new ConfigException(tokenizerConfigPath, "eos_token", $"{tokenizerConfigPath}: eos_token {eosToken} is not a token of the tokenizer");
        var generationEos = new List<int>();
        foreach (string path in new[] { configPath, generationConfigPath }.Where(File.Exists))
        {
            using JsonDocument json = ReadJson(path);
            foreach ((string field, JsonElement value) in Fields(json.RootElement, "eos_token_id", ""))
            {
                IEnumerable<JsonElement> ids = value.ValueKind == JsonValueKind.Array ? value.EnumerateArray() : [value];
                foreach (JsonElement id in ids.Where(id => id.ValueKind != JsonValueKind.Null))
                {
                    if (!id.TryGetInt32Number(out int eos) || eos < 0 || eos >= vocabSize || tokenizer.IdToToken(eos) is null)
                    {
                        throw new ConfigException(path, field, $"{path}: {field} = {value.GetRawText()} is not a token id of the tokenizer (vocabulary {vocabSize})");
                    }
                    if (path == generationConfigPath && field == "eos_token_id")
                    {
                        generationEos.Add(eos);
                    }
                }
            }
        }
        if (File.Exists(generationConfigPath) && generationEos.Count > 0 && !generationEos.Contains(eosTokenId))
        {
            throw new ConfigException(generationConfigPath, "eos_token_id",
                $"{generationConfigPath}: eos_token_id [{string.Join(", ", generationEos)}] does not hold {eosTokenId}, the id of {tokenizerConfigPath}'s eos_token {eosToken}: " +
                "generation would not stop where training ends the turns");
        }
        return (eosToken, eosTokenId);
    }

    /// <summary>Every occurrence of <paramref name="key"/> in the JSON tree, with its dotted path.</summary>
    private static IEnumerable<(string Path, JsonElement Value)> Fields(JsonElement element, string key, string prefix)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            yield break;
        }
        foreach (JsonProperty property in element.EnumerateObject())
        {
            string path = prefix.Length == 0 ? property.Name : $"{prefix}.{property.Name}";
            if (property.Name == key)
            {
                yield return (path, property.Value);
            }
            foreach ((string Path, JsonElement Value) nested in Fields(property.Value, key, path))
            {
                yield return nested;
            }
        }
    }

    /// <summary>The largest id of tokenizer.json: over model.vocab and added_tokens.</summary>
    private static (string Token, int Id) LargestTokenId(string tokenizerPath)
    {
        using JsonDocument json = ReadJson(tokenizerPath);
        var ids = new List<(string, int)>();
        if (json.RootElement.TryGetProperty("model", out JsonElement model) && model.TryGetProperty("vocab", out JsonElement vocab)
            && vocab.ValueKind == JsonValueKind.Object)
        {
            ids.AddRange(vocab.EnumerateObject().Select(entry => (entry.Name, entry.Value.GetInt32())));
        }
        if (json.RootElement.TryGetProperty("added_tokens", out JsonElement added) && added.ValueKind == JsonValueKind.Array)
        {
            ids.AddRange(added.EnumerateArray().Select(token => (token.GetProperty("content").GetString()!, token.GetProperty("id").GetInt32())));
        }
        return ids.Count == 0
            ? throw new ConfigException(tokenizerPath, "model.vocab", $"{tokenizerPath}: no tokens")
            : ids.MaxBy(entry => entry.Item2);
    }

    /// <summary>A special token of tokenizer_config.json: a string or an AddedToken's content; null when absent.</summary>
    internal static string? SpecialToken(string tokenizerConfigPath, string key)
    {
        using JsonDocument json = ReadJson(tokenizerConfigPath);
        if (!json.RootElement.TryGetProperty(key, out JsonElement token))
        {
            return null;
        }
        return token.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => token.GetString(),
            JsonValueKind.Object when token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String => content.GetString(),
            _ => throw new ConfigException(tokenizerConfigPath, key, $"{tokenizerConfigPath}: {key} is a JSON {token.ValueKind}, not a string or {{\"content\": ...}}"),
        };
    }

    internal static JsonDocument ReadJson(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path} not found", path);
        }
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new ConfigException(path, "", $"{path}: not valid JSON ({e.Message})");
        }
    }
}

internal static class JsonNumbers
{
    /// <summary>An integer JSON number that fits int32.</summary>
    public static bool TryGetInt32Number(this JsonElement value, out int number)
    {
        number = 0;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out number);
    }
}
