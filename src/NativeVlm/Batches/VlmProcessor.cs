using System.Text.Json;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;

namespace NativeVlm.Batches;

/// <summary>
/// What turns a row into token ids and pixels for one Idefics3 snapshot, as transformers'
/// Idefics3Processor plus the tokenizer do: the chat template, the tokenizer, the image processor and
/// the prompt expansion, and the ids a batch needs (image, end-of-sequence, padding). Loading reads
/// config.json, tokenizer.json, tokenizer_config.json (or chat_template.jinja/.json; its
/// extra_special_tokens name the image tokens, as SmolVLMProcessor reads them),
/// preprocessor_config.json and, when present, processor_config.json; no weights.
/// </summary>
public sealed class VlmProcessor
{
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    public VlmProcessor(
        ByteLevelBpeTokenizer tokenizer,
        ChatTemplate template,
        Idefics3ImageProcessor imageProcessor,
        Idefics3Prompt prompt,
        int imageTokenId,
        int eosTokenId,
        int padTokenId)
    {
        Tokenizer = tokenizer;
        Template = template;
        ImageProcessor = imageProcessor;
        Prompt = prompt;
        ImageTokenId = imageTokenId;
        EosTokenId = eosTokenId;
        PadTokenId = padTokenId;
        ImageBlockTokenIds = [imageTokenId, RequireToken(tokenizer, prompt.Tokens.FakeAroundImage, "the tokenizer")];
    }

    public ByteLevelBpeTokenizer Tokenizer { get; }

    public ChatTemplate Template { get; }

    public Idefics3ImageProcessor ImageProcessor { get; }

    public Idefics3Prompt Prompt { get; }

    /// <summary>The image token: config.json's image_token_id, which the tokenizer must give the prompt's image token string.</summary>
    public int ImageTokenId { get; }

    /// <summary>tokenizer_config.json's eos_token: TRL appends it to every DPO completion.</summary>
    public int EosTokenId { get; }

    /// <summary>tokenizer_config.json's pad_token, else the eos token (as TRL sets it when the tokenizer has none).</summary>
    public int PadTokenId { get; }

    /// <summary>The image token and the around-image token: an expanded image's block starts and ends with the latter.</summary>
    public IReadOnlyList<int> ImageBlockTokenIds { get; }

    /// <summary>Loads the text and image side of a snapshot folder.</summary>
    /// <exception cref="ConfigException">A file is inconsistent with another (the image token, image_seq_len) or unsupported.</exception>
    public static VlmProcessor Load(string snapshot)
    {
        if (!Directory.Exists(snapshot))
        {
            throw new DirectoryNotFoundException($"{snapshot}: no such snapshot folder");
        }
        Idefics3Config config = Idefics3Config.Load(snapshot);
        ByteLevelBpeTokenizer tokenizer = ByteLevelBpeTokenizer.Load(snapshot);
        ChatTemplate template = ChatTemplate.Load(snapshot);
        var imageProcessor = new Idefics3ImageProcessor(Idefics3ImageProcessorConfig.Load(snapshot));

        string configPath = Path.Combine(snapshot, Idefics3Config.FileName);
        string tokenizerConfigPath = Path.Combine(snapshot, TokenizerConfigFileName);
        Idefics3Prompt prompt = LoadPrompt(snapshot, config, ImageTokens.Load(tokenizerConfigPath));
        int imageTokenId = RequireToken(tokenizer, prompt.Tokens.Image, ByteLevelBpeTokenizer.FileName);
        if (imageTokenId != config.ImageTokenId)
        {
            throw new ConfigException(configPath, "image_token_id",
                $"{configPath}: image_token_id is {config.ImageTokenId} but the tokenizer gives {prompt.Tokens.Image} the id {imageTokenId}: " +
                "image features would never reach the decoder");
        }

        string? eosToken = SpecialToken(tokenizerConfigPath, "eos_token");
        if (eosToken is null)
        {
            throw new ConfigException(tokenizerConfigPath, "eos_token",
                $"{tokenizerConfigPath}: no eos_token (TRL ends every completion with it)");
        }
        int eosTokenId = RequireToken(tokenizer, eosToken, ByteLevelBpeTokenizer.FileName);
        int padTokenId = SpecialToken(tokenizerConfigPath, "pad_token") is { } padToken
            ? RequireToken(tokenizer, padToken, ByteLevelBpeTokenizer.FileName)
            : eosTokenId;
        return new VlmProcessor(tokenizer, template, imageProcessor, prompt, imageTokenId, eosTokenId, padTokenId);
    }

    /// <summary>
    /// image_seq_len from processor_config.json when the snapshot has one, which must then equal what
    /// config.json implies (the model turns each frame into exactly that many features); else config.json's.
    /// </summary>
    private static Idefics3Prompt LoadPrompt(string snapshot, Idefics3Config config, ImageTokens tokens)
    {
        string processorConfigPath = Path.Combine(snapshot, Idefics3Prompt.FileName);
        if (!File.Exists(processorConfigPath))
        {
            return new Idefics3Prompt(config.ImageSeqLen, tokens);
        }
        int imageSeqLen = Idefics3Prompt.Load(processorConfigPath).ImageSeqLen;
        if (imageSeqLen != config.ImageSeqLen)
        {
            throw new ConfigException(processorConfigPath, "image_seq_len",
                $"{processorConfigPath}: image_seq_len is {imageSeqLen} but config.json implies {config.ImageSeqLen} " +
                "image features per frame ((image_size / patch_size)² / scale_factor²)");
        }
        return new Idefics3Prompt(imageSeqLen, tokens);
    }

    private static int RequireToken(ByteLevelBpeTokenizer tokenizer, string token, string source) =>
        tokenizer.TokenToId(token) ?? throw new ConfigException(source, "added_tokens", $"{source}: has no token {token}");

    /// <summary>A special token of tokenizer_config.json: a string, or an AddedToken object's content; null when absent.</summary>
    private static string? SpecialToken(string path, string key)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        using JsonDocument document = ReadJson(path);
        if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty(key, out JsonElement token))
        {
            return null;
        }
        return token.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => token.GetString(),
            JsonValueKind.Object when token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String =>
                content.GetString(),
            _ => throw new ConfigException(path, key, $"{path}: {key} is a JSON {token.ValueKind}, not a string or {{\"content\": ...}}"),
        };
    }

    private static JsonDocument ReadJson(string path)
    {
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
